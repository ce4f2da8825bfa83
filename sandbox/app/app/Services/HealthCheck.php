<?php

namespace App\Services;

use Illuminate\Contracts\Cache\Factory as CacheFactory;
use Illuminate\Contracts\Queue\Factory as QueueFactory;
use Illuminate\Database\ConnectionResolverInterface;
use Illuminate\Support\Facades\Log;
use Throwable;

/**
 * The checks behind GET /api/health (runbook, "Health Checks").
 *
 * database: a real query on the default database connection.
 * cache:    write, read back and delete a key through the default cache store.
 * queue:    the default queue connection answers (size of the default queue).
 * storage:  storage_path() is writable and has enough free space.
 *
 * A failing backend never throws out of run(): it is reported as an
 * "unhealthy" check and the exception is logged.
 */
class HealthCheck
{
    public const HEALTHY = 'healthy';

    public const UNHEALTHY = 'unhealthy';

    public function __construct(
        private ConnectionResolverInterface $db,
        private CacheFactory $cache,
        private QueueFactory $queue,
        private string $storagePath,
        private int $minFreeSpacePercent = 2,
    ) {
    }

    /**
     * Run every check.
     *
     * @param  float|null  $startedAt  microtime(true) of the request start (LARAVEL_START)
     * @return array{status: string, timestamp: string, response_time_ms: int, checks: array<string, array{status: string, message: string}>}
     */
    public function run(?float $startedAt = null): array
    {
        $startedAt ??= microtime(true);

        $checks = [
            'database' => $this->guard('database', fn () => $this->database()),
            'cache' => $this->guard('cache', fn () => $this->cacheCheck()),
            'queue' => $this->guard('queue', fn () => $this->queueCheck()),
            'storage' => $this->guard('storage', fn () => $this->storage()),
        ];

        $healthy = true;

        foreach ($checks as $check) {
            $healthy = $healthy && $check['status'] === self::HEALTHY;
        }

        return [
            'status' => $healthy ? self::HEALTHY : self::UNHEALTHY,
            'timestamp' => gmdate('Y-m-d\TH:i:s\Z'),
            'response_time_ms' => (int) round((microtime(true) - $startedAt) * 1000),
            'checks' => $checks,
        ];
    }

    /**
     * @return array{status: string, message: string}
     */
    private function database(): array
    {
        $this->db->connection()->select('select 1 as ok');

        return $this->ok('Connected');
    }

    /**
     * @return array{status: string, message: string}
     */
    private function cacheCheck(): array
    {
        $store = $this->cache->store();
        $key = 'health_check:'.bin2hex(random_bytes(8));
        $value = bin2hex(random_bytes(8));

        $store->put($key, $value, 30);
        $read = $store->get($key);
        $store->forget($key);

        if ($read !== $value) {
            return $this->fail('Read/write mismatch');
        }

        return $this->ok('Read/write successful');
    }

    /**
     * @return array{status: string, message: string}
     */
    private function queueCheck(): array
    {
        $this->queue->connection()->size();

        return $this->ok('Connection successful');
    }

    /**
     * @return array{status: string, message: string}
     */
    private function storage(): array
    {
        foreach (['framework', 'logs'] as $dir) {
            $path = $this->storagePath.'/'.$dir;

            if (! is_dir($path) || ! is_writable($path)) {
                return $this->fail("Storage not writable: {$dir}/");
            }
        }

        $free = @disk_free_space($this->storagePath);
        $total = @disk_total_space($this->storagePath);

        if ($free === false || $total === false || $total <= 0) {
            return $this->fail('Unable to read free space');
        }

        $percent = (int) floor($free / $total * 100);
        $message = "{$percent}% free space";

        return $percent < $this->minFreeSpacePercent ? $this->fail($message) : $this->ok($message);
    }

    /**
     * @param  callable(): array{status: string, message: string}  $check
     * @return array{status: string, message: string}
     */
    private function guard(string $name, callable $check): array
    {
        try {
            return $check();
        } catch (Throwable $e) {
            try {
                Log::warning("Health check '{$name}' failed: ".$e->getMessage(), ['exception' => $e::class]);
            } catch (Throwable) {
                // The log may be what is broken (storage not writable): the response still goes out.
            }

            return $this->fail($this->describe($e));
        }
    }

    /**
     * A short, safe description of a backend failure ("Connection refused", "Connection timeout").
     */
    private function describe(Throwable $e): string
    {
        $message = $e->getMessage();

        foreach ([
            'timeout' => 'Connection timeout',
            'timed out' => 'Connection timeout',
            'Connection refused' => 'Connection refused',
            'password authentication failed' => 'Connection failed: authentication failed',
            'NOAUTH' => 'Connection failed: authentication failed',
            'WRONGPASS' => 'Connection failed: authentication failed',
            'does not exist' => 'Connection failed: database does not exist',
            'could not translate host name' => 'Connection failed: unknown host',
            'Name or service not known' => 'Connection failed: unknown host',
            'getaddrinfo' => 'Connection failed: unknown host',
            'No such file or directory' => 'Connection failed: no such socket',
            'went away' => 'Connection lost',
            'Connection lost' => 'Connection lost',
            'read error on connection' => 'Connection lost',
        ] as $needle => $description) {
            if (stripos($message, $needle) !== false) {
                return $description;
            }
        }

        return 'Connection failed';
    }

    /**
     * @return array{status: string, message: string}
     */
    private function ok(string $message): array
    {
        return ['status' => self::HEALTHY, 'message' => $message];
    }

    /**
     * @return array{status: string, message: string}
     */
    private function fail(string $message): array
    {
        return ['status' => self::UNHEALTHY, 'message' => $message];
    }
}
