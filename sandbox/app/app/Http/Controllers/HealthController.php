<?php

namespace App\Http\Controllers;

use App\Services\HealthCheck;
use Illuminate\Http\JsonResponse;

class HealthController extends Controller
{
    /**
     * GET /api/health: 200 with "status": "healthy" when every check passes, else 503.
     */
    public function __invoke(HealthCheck $health): JsonResponse
    {
        $result = $health->run(defined('LARAVEL_START') ? LARAVEL_START : null);
        $code = $result['status'] === HealthCheck::HEALTHY ? 200 : 503;

        return new JsonResponse($result, $code, [
            'Cache-Control' => 'no-store, max-age=0',
        ], JSON_UNESCAPED_SLASHES);
    }
}
