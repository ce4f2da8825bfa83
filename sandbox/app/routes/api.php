<?php

use App\Http\Controllers\BoomController;
use App\Http\Controllers\FeatureController;
use App\Http\Controllers\HealthController;
use App\Http\Controllers\MeController;
use App\Http\Controllers\SlowController;
use App\Http\Controllers\VisaApplicationController;
use Illuminate\Support\Facades\Route;

/*
|--------------------------------------------------------------------------
| API Routes (prefix /api, "api" middleware group)
|--------------------------------------------------------------------------
|
| Controllers only, no closures: "php artisan route:cache" must work.
|
*/

Route::get('/health', HealthController::class)->name('health');
Route::get('/slow', SlowController::class)->name('slow');
Route::get('/features', FeatureController::class)->name('features');
Route::get('/boom', BoomController::class)->name('boom');

Route::middleware('api.token')->group(function () {
    Route::get('/me', MeController::class)->name('me');
    Route::get('/visa-applications', [VisaApplicationController::class, 'index'])
        ->name('visa-applications.index');
    Route::post('/visa-applications', [VisaApplicationController::class, 'store'])
        ->name('visa-applications.store');
    Route::get('/visa-applications/{visaApplication}', [VisaApplicationController::class, 'show'])
        ->whereNumber('visaApplication')
        ->name('visa-applications.show');
});
