<?php

/*
|--------------------------------------------------------------------------
| Feature Flags (defaults)
|--------------------------------------------------------------------------
|
| One entry per flag (runbook, "Feature Flags"). Runtime overrides set with
| App\Services\FeatureFlagService (or "php artisan feature:set") take
| precedence over these values until reset.
|
*/

return [

    'visa_new_flow_20250601' => [
        'enabled' => true,
        'rollout_percentage' => 5,
        'user_whitelist' => [1, 2],
        'description' => 'New visa application flow',
        'created_at' => '2025-06-01',
        'remove_after' => '2025-07-01',
    ],

    'document_upload_v2' => [
        'enabled' => false,
        'rollout_percentage' => 0,
        'user_whitelist' => [],
        'description' => 'Second version of the document upload page',
        'created_at' => '2025-06-15',
        'remove_after' => '2025-08-15',
    ],

];
