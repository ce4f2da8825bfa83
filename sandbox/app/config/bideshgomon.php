<?php

return [

    /*
    |--------------------------------------------------------------------------
    | API token
    |--------------------------------------------------------------------------
    |
    | Bearer token the /api/me and /api/visa-applications routes require
    | ("Authorization: Bearer <API_TOKEN>"). Empty: those routes refuse everybody.
    |
    */

    'api_token' => env('API_TOKEN', ''),

    /*
    |--------------------------------------------------------------------------
    | Health check (/api/health)
    |--------------------------------------------------------------------------
    |
    | The storage check fails below this percentage of free disk space.
    |
    */

    'health' => [
        'min_free_space_percent' => (int) env('HEALTH_MIN_FREE_SPACE_PERCENT', 2),
    ],

    /*
    |--------------------------------------------------------------------------
    | Feature flags
    |--------------------------------------------------------------------------
    |
    | Runtime overrides of config/features.php live in this Redis connection
    | (config/database.php "redis"), not in the cache store, so clearing the
    | cache never undoes a kill switch.
    |
    */

    'feature_flags' => [
        'redis_connection' => env('FEATURE_FLAGS_REDIS_CONNECTION', 'default'),
    ],

];
