<?php

namespace App\Http\Middleware;

use Closure;
use Illuminate\Http\Request;

/**
 * API routes always answer in JSON, even to clients that do not send "Accept: application/json"
 * (curl, load balancer probes): errors then render as JSON, not as HTML pages or redirects.
 */
class ForceJsonResponse
{
    /**
     * @param  \Closure(\Illuminate\Http\Request): mixed  $next
     * @return mixed
     */
    public function handle(Request $request, Closure $next)
    {
        $request->headers->set('Accept', 'application/json');

        return $next($request);
    }
}
