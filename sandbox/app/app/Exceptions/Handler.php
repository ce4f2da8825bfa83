<?php

namespace App\Exceptions;

use App\Services\ReleaseInfo;
use Illuminate\Foundation\Exceptions\Handler as ExceptionHandler;
use Throwable;

class Handler extends ExceptionHandler
{
    /**
     * A list of the inputs that are never flashed for validation exceptions.
     *
     * @var array<int, string>
     */
    protected $dontFlash = [
        'current_password',
        'password',
        'password_confirmation',
    ];

    /**
     * Register the exception handling callbacks for the application.
     *
     * @return void
     */
    public function register()
    {
        //
    }

    /**
     * Render an exception into an HTTP response, with the X-Release and X-Colour headers
     * (also for errors raised outside the middleware pipeline).
     *
     * @param  \Illuminate\Http\Request  $request
     * @return \Symfony\Component\HttpFoundation\Response
     *
     * @throws \Throwable
     */
    public function render($request, Throwable $e)
    {
        $response = parent::render($request, $e);

        try {
            $this->container->make(ReleaseInfo::class)->addHeaders($response);
        } catch (Throwable) {
            // Never let the headers hide the original error.
        }

        return $response;
    }

    /**
     * API URLs always get JSON errors.
     *
     * @param  \Illuminate\Http\Request  $request
     * @return bool
     */
    protected function shouldReturnJson($request, Throwable $e)
    {
        return $request->is('api', 'api/*') || parent::shouldReturnJson($request, $e);
    }
}
