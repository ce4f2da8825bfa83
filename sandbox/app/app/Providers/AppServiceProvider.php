<?php

namespace App\Providers;

use App\Services\AssetManifest;
use App\Services\FeatureFlagService;
use App\Services\HealthCheck;
use App\Services\ReleaseInfo;
use Illuminate\Support\ServiceProvider;

class AppServiceProvider extends ServiceProvider
{
    /**
     * Register any application services.
     *
     * @return void
     */
    public function register()
    {
        $this->app->singleton(ReleaseInfo::class, fn ($app) => new ReleaseInfo($app->basePath()));

        $this->app->singleton(AssetManifest::class, fn ($app) => new AssetManifest($app->publicPath().'/build'));

        $this->app->singleton(FeatureFlagService::class, fn ($app) => new FeatureFlagService(
            $app['config'],
            $app['redis'],
            $app['config']->get('bideshgomon.feature_flags.redis_connection'),
        ));

        $this->app->bind(HealthCheck::class, fn ($app) => new HealthCheck(
            $app['db'],
            $app['cache'],
            $app['queue'],
            $app->storagePath(),
            (int) $app['config']->get('bideshgomon.health.min_free_space_percent', 2),
        ));
    }

    /**
     * Bootstrap any application services.
     *
     * @return void
     */
    public function boot()
    {
        //
    }
}
