<?php

use App\Http\Controllers\HomeController;
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
