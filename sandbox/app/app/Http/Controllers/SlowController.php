<?php

namespace App\Http\Controllers;

use App\Services\ReleaseInfo;
use Illuminate\Http\JsonResponse;
use Illuminate\Http\Request;

class SlowController extends Controller
{
    /** Longest sleep a request may ask for, in seconds. */
    public const MAX_SECONDS = 30;

    /**
     * GET /api/slow?seconds=N: sleeps N seconds (default 1, at most 30, fractions allowed),
     * then answers 200 with the release and colour that served it (for in-flight request tests).
     */
    public function __invoke(Request $request, ReleaseInfo $release): JsonResponse
    {
        $requested = $request->query('seconds', '1');
        $seconds = is_numeric($requested) ? (float) $requested : 1.0;
        $seconds = max(0.0, min((float) self::MAX_SECONDS, $seconds));

        $startedAt = gmdate('Y-m-d\TH:i:s\Z');
        set_time_limit(self::MAX_SECONDS + 30);
        usleep((int) round($seconds * 1_000_000));

        return new JsonResponse([
            'slept_seconds' => $seconds,
            'started_at' => $startedAt,
            'finished_at' => gmdate('Y-m-d\TH:i:s\Z'),
        ] + $release->toArray());
    }
}
