<?php

namespace App\Http\Controllers;

use App\Services\ReleaseInfo;
use Illuminate\Http\JsonResponse;

class MeController extends Controller
{
    /**
     * GET /api/me (bearer token): who is calling. The only identity is the API token.
     */
    public function __invoke(ReleaseInfo $release): JsonResponse
    {
        return new JsonResponse(['authenticated' => true, 'client' => 'api-token'] + $release->toArray());
    }
}
