<?php

namespace App\Services;

use Illuminate\Contracts\Config\Repository as Config;
use Illuminate\Contracts\Redis\Factory as RedisFactory;
use Illuminate\Support\Facades\Log;
use InvalidArgumentException;
use Throwable;

/**
 * Feature flags (runbook, "Feature Flags").
 *
 * Defaults come from config/features.php, one entry per flag:
 * enabled, rollout_percentage, user_whitelist, description, created_at, remove_after.
 *
 * Runtime overrides (enable, disable, setRollout, enableForUsers) are stored in
 * Redis, in one hash on the "default" Redis connection, and take precedence over
 * the config defaults in every process at once: the kill switch disable() works
 * without a deploy. They are deliberately not in the cache store: "php artisan
 * cache:clear" or cache()->flush() (the runbook's emergency steps) must not undo
 * a kill switch. reset() drops a flag's overrides.
 *
 * isEnabled() never throws: when Redis is unreachable it falls back to the
 * config defaults (and logs a warning). The writers throw, so that an operator
 * knows the change did not happen.
 *
 * Evaluation: a disabled flag is off for everybody; an enabled flag is on for
 * whitelisted users, and for the rollout percentage of the other users, chosen
 * by a stable hash of flag name and user id (a user keeps their answer as the
 * percentage grows). Without a user id, only 100% counts as on.
 */
class FeatureFlagService
{
    /** Redis hash holding the overrides: field = flag name, value = JSON. */
    public const OVERRIDES_KEY = 'feature_flags:overrides';

    public function __construct(
        private Config $config,
        private RedisFactory $redis,
        private ?string $connection = null,
    ) {
    }

    /**
     * Is the flag on (for this user, when given)? Unknown flags are off.
     */
    public function isEnabled(string $name, int|string|null $userId = null): bool
    {
        $defaults = $this->defaults();

        if (! isset($defaults[$name])) {
            return false;
        }

        try {
            $overrides = $this->readOverrides($name);
        } catch (Throwable $e) {
            Log::warning("Feature flag '{$name}': overrides unreadable, using config defaults: ".$e->getMessage());
            $overrides = [];
        }

        $flag = $this->merge($defaults[$name], $overrides);

        if (! $flag['enabled']) {
            return false;
        }

        if ($userId !== null && in_array((string) $userId, array_map('strval', $flag['user_whitelist']), true)) {
            return true;
        }

        $percentage = $flag['rollout_percentage'];

        if ($percentage >= 100) {
            return true;
        }

        if ($percentage <= 0 || $userId === null) {
            return false;
        }

        return $this->bucket($name, (string) $userId) < $percentage;
    }

    /**
     * Turn the flag on for everybody (100% rollout).
     */
    public function enable(string $name): void
    {
        $this->write($name, ['enabled' => true, 'rollout_percentage' => 100]);
    }

    /**
     * Kill switch: turn the flag off for everybody, whitelisted users included.
     */
    public function disable(string $name): void
    {
        $this->write($name, ['enabled' => false]);
    }

    /**
     * Turn the flag on for this percentage (0-100) of users.
     */
    public function setRollout(string $name, int $percentage): void
    {
        if ($percentage < 0 || $percentage > 100) {
            throw new InvalidArgumentException("Rollout percentage must be between 0 and 100, got {$percentage}.");
        }

        $this->write($name, ['enabled' => true, 'rollout_percentage' => $percentage]);
    }

    /**
     * Turn the flag on for these users (added to the whitelist), whatever the percentage.
     *
     * @param  array<int, int|string>  $userIds
     */
    public function enableForUsers(string $name, array $userIds): void
    {
        $current = $this->get($name)['user_whitelist'];
        $whitelist = array_values(array_unique(array_merge($current, array_values($userIds)), SORT_REGULAR));

        $this->write($name, ['enabled' => true, 'user_whitelist' => $whitelist]);
    }

    /**
     * Forget the runtime overrides of a flag: the config defaults apply again.
     */
    public function reset(string $name): void
    {
        $this->assertKnown($name);
        $this->redis()->hdel(self::OVERRIDES_KEY, $name);
    }

    /**
     * The effective settings of one flag, with "overridden" telling whether runtime overrides apply.
     *
     * @return array{enabled: bool, rollout_percentage: int, user_whitelist: array<int, int|string>, description: string, created_at: ?string, remove_after: ?string, overridden: bool}
     */
    public function get(string $name): array
    {
        $this->assertKnown($name);
        $overrides = $this->readOverrides($name);

        return $this->merge($this->defaults()[$name], $overrides) + ['overridden' => $overrides !== []];
    }

    /**
     * The effective settings of every flag in config/features.php, by name.
     *
     * @return array<string, array<string, mixed>>
     */
    public function all(): array
    {
        $flags = [];

        foreach (array_keys($this->defaults()) as $name) {
            $flags[$name] = $this->get($name);
        }

        return $flags;
    }

    /**
     * The flags' on/off answers for one user (what the front end needs).
     *
     * @return array<string, bool>
     */
    public function evaluateAll(int|string|null $userId = null): array
    {
        $answers = [];

        foreach (array_keys($this->defaults()) as $name) {
            $answers[$name] = $this->isEnabled($name, $userId);
        }

        return $answers;
    }

    public function exists(string $name): bool
    {
        return isset($this->defaults()[$name]);
    }

    /**
     * @return array<string, array<string, mixed>>
     */
    private function defaults(): array
    {
        $flags = $this->config->get('features', []);

        return is_array($flags) ? array_filter($flags, 'is_array') : [];
    }

    /**
     * @param  array<string, mixed>  $defaults
     * @param  array<string, mixed>  $overrides
     * @return array{enabled: bool, rollout_percentage: int, user_whitelist: array<int, int|string>, description: string, created_at: ?string, remove_after: ?string}
     */
    private function merge(array $defaults, array $overrides): array
    {
        $flag = array_merge($defaults, array_intersect_key(
            $overrides,
            array_flip(['enabled', 'rollout_percentage', 'user_whitelist'])
        ));

        return [
            'enabled' => (bool) ($flag['enabled'] ?? false),
            'rollout_percentage' => max(0, min(100, (int) ($flag['rollout_percentage'] ?? 100))),
            'user_whitelist' => array_values((array) ($flag['user_whitelist'] ?? [])),
            'description' => (string) ($flag['description'] ?? ''),
            'created_at' => isset($flag['created_at']) ? (string) $flag['created_at'] : null,
            'remove_after' => isset($flag['remove_after']) ? (string) $flag['remove_after'] : null,
        ];
    }

    /**
     * @return array<string, mixed>
     */
    private function readOverrides(string $name): array
    {
        $raw = $this->redis()->hget(self::OVERRIDES_KEY, $name);

        if (! is_string($raw) || $raw === '') {
            return [];
        }

        $decoded = json_decode($raw, true);

        return is_array($decoded) ? $decoded : [];
    }

    /**
     * @param  array<string, mixed>  $changes
     */
    private function write(string $name, array $changes): void
    {
        $this->assertKnown($name);

        $overrides = array_merge($this->readOverrides($name), $changes, [
            'updated_at' => gmdate('Y-m-d\TH:i:s\Z'),
        ]);

        $this->redis()->hset(self::OVERRIDES_KEY, $name, json_encode($overrides));
    }

    private function assertKnown(string $name): void
    {
        if (! $this->exists($name)) {
            $known = implode(', ', array_keys($this->defaults())) ?: 'none';

            throw new InvalidArgumentException("Unknown feature flag '{$name}' (known flags: {$known}).");
        }
    }

    /**
     * A stable number 0-99 for this flag and user.
     */
    private function bucket(string $name, string $userId): int
    {
        return (int) (crc32($name.'|'.$userId) % 100);
    }

    private function redis(): \Illuminate\Redis\Connections\Connection
    {
        return $this->redis->connection($this->connection);
    }
}
