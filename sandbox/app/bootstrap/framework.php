<?php

/*
|--------------------------------------------------------------------------
| Laravel Framework (Debian package)
|--------------------------------------------------------------------------
|
| The framework is not a Composer dependency of this application: it comes
| from Debian's "php-laravel-framework" package, which installs Laravel 8
| under /usr/share/php/Illuminate together with an autoloader for it and
| for every library it needs (Symfony, Carbon, Monolog, Dotenv, ...).
|
| Composer lists this file under "autoload.files", so vendor/autoload.php
| loads the application's classes and then the framework. The location can
| be overridden with LARAVEL_FRAMEWORK_AUTOLOAD (for a framework elsewhere).
|
*/

(static function (): void {
    $autoload = getenv('LARAVEL_FRAMEWORK_AUTOLOAD') ?: '/usr/share/php/Illuminate/autoload.php';

    if (! is_file($autoload)) {
        $message = "Laravel framework autoloader not found at {$autoload}: "
            ."install Debian's php-laravel-framework package (apt-get install php-laravel-framework).\n";

        if (PHP_SAPI === 'cli') {
            fwrite(STDERR, $message);
        } else {
            error_log($message);
            http_response_code(500);
        }

        exit(1);
    }

    // The Debian autoloader requires its dependencies relative to the include
    // path (e.g. 'Carbon/autoload.php'), so /usr/share/php must be on it.
    $shareDir = dirname($autoload, 2);
    $includePath = get_include_path();

    if (! in_array($shareDir, explode(PATH_SEPARATOR, $includePath), true)) {
        set_include_path($includePath.PATH_SEPARATOR.$shareDir);
    }

    require_once $autoload;
})();
