<?php

namespace App\Http\Controllers;

use App\Services\RequestMetrics;
use Illuminate\Http\Response;

class MetricsController extends Controller
{
    /**
     * GET /metrics: request counters, latency histograms and the queue backlog in Prometheus's
     * text format 0.0.4 (see App\Services\RequestMetrics). 503 with a comment when Redis, where
     * the numbers live, cannot be read. Not counted itself, and outside the "web" group: no
     * session, no cookies.
     */
    public function __invoke(RequestMetrics $metrics): Response
    {
        [$status, $body] = $metrics->render();

        return new Response($body, $status, [
            'Content-Type' => RequestMetrics::CONTENT_TYPE,
            'Cache-Control' => 'no-store, max-age=0',
        ]);
    }
}
