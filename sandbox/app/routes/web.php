<?php

use App\Http\Controllers\HomeController;
use App\Http\Controllers\MetricsController;
use Illuminate\Support\Facades\Route;

/*
|--------------------------------------------------------------------------
| Web Routes
|--------------------------------------------------------------------------
|
| Controllers only, no closures: "php artisan route:cache" must work.
|
*/

Route::get('/', HomeController::class)->name('home');

// Prometheus scrapes this: no session, cookies or CSRF (the "web" group is left out).
Route::get('/metrics', MetricsController::class)->withoutMiddleware('web')->name('metrics');
