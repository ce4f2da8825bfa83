<?php

/**
 * Router for PHP's built-in web server ("php artisan serve"): serve files
 * that exist under public/ as they are, send everything else to Laravel.
 */
$uri = urldecode(
    parse_url($_SERVER['REQUEST_URI'], PHP_URL_PATH) ?? ''
);

if ($uri !== '/' && file_exists(__DIR__.'/public'.$uri)) {
    return false;
}

require_once __DIR__.'/public/index.php';
