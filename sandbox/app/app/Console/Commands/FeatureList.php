<?php

namespace App\Console\Commands;

use App\Services\FeatureFlagService;
use Illuminate\Console\Command;
use Throwable;

/**
 * List the feature flags with their effective settings (config defaults + runtime overrides).
 *
 * --json prints {"flags": {"<name>": {"enabled": bool, "rollout_percentage": int,
 * "user_whitelist": [...], "description": str, "created_at": str|null, "remove_after": str|null,
 * "overridden": bool}}}.
 */
class FeatureList extends Command
{
    /**
     * @var string
     */
    protected $signature = 'feature:list {--json : Machine-readable output}';

    /**
     * @var string
     */
    protected $description = 'List feature flags and their effective settings';

    public function handle(FeatureFlagService $flags): int
    {
        try {
            $all = $flags->all();
        } catch (Throwable $e) {
            $this->error('Cannot read feature flag overrides: '.$e->getMessage());

            return 1;
        }

        if ($this->option('json')) {
            $this->line(json_encode(['flags' => (object) $all], JSON_UNESCAPED_SLASHES));

            return 0;
        }

        $rows = [];

        foreach ($all as $name => $flag) {
            $rows[] = [
                $name,
                $flag['enabled'] ? 'yes' : 'no',
                $flag['rollout_percentage'].'%',
                implode(',', $flag['user_whitelist']),
                $flag['overridden'] ? 'runtime' : 'config',
                (string) $flag['remove_after'],
                $flag['description'],
            ];
        }

        $this->table(['Flag', 'Enabled', 'Rollout', 'Users', 'Source', 'Remove after', 'Description'], $rows);

        return 0;
    }
}
