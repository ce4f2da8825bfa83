<?php

namespace App\Http\Middleware;

use App\Services\ReleaseInfo;
use App\Services\RequestMetrics;
use Closure;
use Illuminate\Http\Request;
use Symfony\Component\HttpFoundation\Response;
use Throwable;

/**
 * Counts every request (but GET /metrics itself) by status, colour and route, with its duration.
 *
 * handle() notes how long the request took, from PHP's request start time until the response
 * was ready; terminate() writes the numbers to Redis after the response has been sent
 * (php-fpm flushes it first), so counting never delays an answer. When Redis is down the
 * request still succeeds: the error is swallowed and the request goes uncounted.
 *
 * Registered first in the global middleware stack, so it sees the final status of every
 * request: errors, 404s, maintenance-mode 503s and unhealthy health checks included.
 */
class RecordRequestMetrics
{
    public const DURATION = 'bgdeploy.metrics.seconds';

    public function __construct(private RequestMetrics $metrics, private ReleaseInfo $release)
    {
    }

    /**
     * @param  \Closure(\Illuminate\Http\Request): mixed  $next
     * @return mixed
     */
    public function handle(Request $request, Closure $next)
    {
        $start = $this->startTime();
        $response = $next($request);
        $request->attributes->set(self::DURATION, max(0.0, microtime(true) - $start));

        return $response;
    }

    public function terminate(Request $request, mixed $response): void
    {
        $seconds = $request->attributes->get(self::DURATION);

        if (! is_float($seconds) || $request->path() === 'metrics') {
            return;
        }

        $status = $response instanceof Response ? $response->getStatusCode() : 500;

        try {
            $route = $this->metrics->routeLabel($request->route());
            $this->metrics->record($this->release->colour(), $route, $status, $seconds);
        } catch (Throwable $e) {
            // Redis is down or slow: the request was answered; it goes uncounted.
        }
    }

    /**
     * When PHP started on this request (php-fpm's REQUEST_TIME_FLOAT), else the front
     * controller's LARAVEL_START, else now.
     */
    private function startTime(): float
    {
        $start = $_SERVER['REQUEST_TIME_FLOAT'] ?? null;

        if (is_float($start) && $start > 0 && $start <= microtime(true)) {
            return $start;
        }

        return defined('LARAVEL_START') ? (float) LARAVEL_START : microtime(true);
    }
}
