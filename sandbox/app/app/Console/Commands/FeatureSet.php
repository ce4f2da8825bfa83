<?php

namespace App\Console\Commands;

use App\Services\FeatureFlagService;
use Illuminate\Console\Command;
use Throwable;

/**
 * Change a feature flag at runtime, without tinker (runbook, "Gradual Rollout" and "Kill Switch").
 *
 *   php artisan feature:set visa_new_flow_20250601 --rollout=25
 *   php artisan feature:set visa_new_flow_20250601 --users=1,2,3
 *   php artisan feature:set visa_new_flow_20250601 --enable
 *   php artisan feature:set visa_new_flow_20250601 --disable      (kill switch)
 *   php artisan feature:set visa_new_flow_20250601 --reset        (back to config/features.php)
 *
 * Prints the flag's resulting settings as JSON. Exit code 1 on an unknown flag or a Redis error,
 * 2 on bad options.
 */
class FeatureSet extends Command
{
    /**
     * @var string
     */
    protected $signature = 'feature:set
        {name : Flag name, as in config/features.php}
        {--enable : On for everybody (100% rollout)}
        {--disable : Off for everybody (kill switch)}
        {--rollout= : On for this percentage of users (0-100)}
        {--users= : Comma-separated user ids to whitelist}
        {--reset : Drop runtime overrides (config defaults apply again)}';

    /**
     * @var string
     */
    protected $description = 'Enable, disable, roll out or whitelist a feature flag at runtime';

    public function handle(FeatureFlagService $flags): int
    {
        $name = (string) $this->argument('name');
        $enable = (bool) $this->option('enable');
        $disable = (bool) $this->option('disable');
        $reset = (bool) $this->option('reset');
        $rollout = $this->option('rollout');
        $users = $this->option('users');

        if ($enable && $disable) {
            $this->error('--enable and --disable exclude each other.');

            return 2;
        }

        if (! $enable && ! $disable && ! $reset && $rollout === null && $users === null) {
            $this->error('Nothing to do: give --enable, --disable, --rollout=PCT, --users=IDS or --reset.');

            return 2;
        }

        if ($rollout !== null && (! preg_match('/^\d{1,3}$/', (string) $rollout) || (int) $rollout > 100)) {
            $this->error('--rollout takes a whole percentage, 0-100.');

            return 2;
        }

        $userIds = [];

        if ($users !== null) {
            foreach (array_filter(array_map('trim', explode(',', (string) $users)), 'strlen') as $id) {
                $userIds[] = ctype_digit($id) ? (int) $id : $id;
            }

            if ($userIds === []) {
                $this->error('--users takes comma-separated user ids.');

                return 2;
            }
        }

        try {
            if ($reset) {
                $flags->reset($name);
            }

            if ($rollout !== null) {
                $flags->setRollout($name, (int) $rollout);
            }

            if ($userIds !== []) {
                $flags->enableForUsers($name, $userIds);
            }

            if ($enable) {
                $flags->enable($name);
            }

            if ($disable) {
                $flags->disable($name);
            }

            $this->line(json_encode([$name => $flags->get($name)], JSON_UNESCAPED_SLASHES));
        } catch (Throwable $e) {
            $this->error($e->getMessage());

            return 1;
        }

        return 0;
    }
}
