<?php

namespace App\Http\Middleware;

use App\Services\ReleaseInfo;
use Closure;
use Illuminate\Http\Request;

/**
 * Adds X-Release (git sha of the checkout) and X-Colour (blue/green) to every response.
 */
class AddReleaseHeaders
{
    public function __construct(private ReleaseInfo $release)
    {
    }

    /**
     * @param  \Closure(\Illuminate\Http\Request): mixed  $next
     * @return mixed
     */
    public function handle(Request $request, Closure $next)
    {
        $response = $next($request);

        return $this->release->addHeaders($response);
    }
}
