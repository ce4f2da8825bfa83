<?php

namespace App\Http\Controllers;

use App\Services\ReleaseInfo;
use Illuminate\Http\JsonResponse;

class BoomController extends Controller
{
    /**
     * GET /api/boom: always answers 500, on purpose, without logging. Tests and demos drive
     * server errors through it (the HighErrorRate alert, the metric gate); it is counted in
     * http_requests_total{status="500"} like any other answer.
     */
    public function __invoke(ReleaseInfo $release): JsonResponse
    {
        return new JsonResponse(['error' => 'boom: a deliberate server error'] + $release->toArray(), 500);
    }
}
