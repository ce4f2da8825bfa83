<?php

namespace App\Http\Controllers;

use App\Services\FeatureFlagService;
use Illuminate\Http\JsonResponse;
use Illuminate\Http\Request;

class FeatureController extends Controller
{
    /**
     * GET /api/features?user_id=N: each flag's on/off answer for that user (what the Vue
     * useFeatureFlags composable reads).
     */
    public function __invoke(Request $request, FeatureFlagService $flags): JsonResponse
    {
        $userId = $request->query('user_id');
        $userId = is_string($userId) && $userId !== '' ? $userId : null;

        return new JsonResponse(['flags' => (object) $flags->evaluateAll($userId)]);
    }
}
