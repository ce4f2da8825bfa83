<?php

namespace App\Http\Middleware;

use Closure;
use Illuminate\Http\JsonResponse;
use Illuminate\Http\Request;

/**
 * Bearer-token authentication for the API: "Authorization: Bearer <token>" must match the
 * API_TOKEN setting (config('bideshgomon.api_token')). Compared in constant time. When no
 * token is configured, every request is refused: an empty token never authenticates.
 */
class AuthenticateApiToken
{
    /**
     * @param  \Closure(\Illuminate\Http\Request): mixed  $next
     * @return mixed
     */
    public function handle(Request $request, Closure $next)
    {
        $expected = (string) config('bideshgomon.api_token', '');
        $given = (string) $request->bearerToken();

        if ($expected === '' || $given === '' || ! hash_equals($expected, $given)) {
            return new JsonResponse(
                ['message' => 'Unauthenticated.'],
                401,
                ['WWW-Authenticate' => 'Bearer realm="bideshgomon"']
            );
        }

        return $next($request);
    }
}
