<?php

namespace App\Services;

use Illuminate\Contracts\Queue\Factory as QueueFactory;
use Illuminate\Contracts\Redis\Factory as RedisFactory;
use Illuminate\Database\ConnectionResolverInterface as Database;
use Illuminate\Routing\Route;
use Illuminate\Routing\Router;
use Throwable;

/**
 * Request counters and latency histograms for GET /metrics (Prometheus text format 0.0.4).
 *
 * php-fpm workers share nothing, so the numbers live in Redis (the default connection): one
 * hash per web host, "metrics:http:routes:<hostname>", with the fields
 *
 *   <colour>|<route>|status|<code>   requests answered with that status      (HINCRBY)
 *   <colour>|<route>|bucket|<le>     requests whose duration fell in (previous le, le]  (HINCRBY)
 *   <colour>|<route>|sum             total seconds                            (HINCRBYFLOAT)
 *
 * written in one MULTI/EXEC per request, and read with one HGETALL, so a scrape never sees half a
 * request. Buckets are stored non-cumulative and summed when rendered. Each host exposes only its
 * own requests: Prometheus scrapes every web host, and a shared hash would be counted once per host.
 *
 * <route> is the Laravel route's name, else its URI pattern ("api/visa-applications/{id}"), else
 * "unmatched" (a 404 that matched no route): never the raw path, so the number of series is
 * bounded by the application's routes. The canary gate compares the colours route by route.
 * (The hash was "metrics:http:<hostname>", without routes, before routes were labelled: a release
 * of each kind counts apart.)
 *
 * Both colours (blue, green) are always exposed for every route of the application, with
 * zero-valued status="200", "500" and "503" series and an empty histogram: rate() and increase()
 * see the first 5xx of a new colour or route (a series that appears with the value 1 shows no
 * increase), and a colour without requests answers NaN ("no traffic") rather than an empty result
 * ("no data").
 *
 * Two database-wide numbers come with them, read from the database at each scrape (every web host
 * shows the same value; alert on max()): database_connections (sessions on the application's
 * database, pg_stat_activity) and queue_jobs_failed_total (rows in the failed jobs table).
 *
 * And this host's php-fpm workers per colour (App\Services\FpmMemory, read from /proc at each
 * scrape): php_fpm_processes, php_fpm_memory_bytes (the sum of their VmRSS) and
 * php_fpm_memory_anon_bytes (the sum of their RssAnon: their own heaps, without the shared
 * opcache and file pages). The canary gate compares the canary's memory per worker with the
 * live colour's (bgdeploy/checks/trends.py).
 */
class RequestMetrics
{
    /**
     * Upper bounds of the latency buckets, in seconds (+Inf is added): about 10 % apart from
     * 10 ms to 1 s (the E24 series), coarser outside. The canary's comparison with its baseline
     * judges quantiles 20 % apart, and a quantile or a count above a limit is interpolated
     * inside one bucket: with buckets 40 % apart (as before) a release 40 % slower moved the
     * median by about one bucket, and the interpolation hid most of it. Requests increment one
     * bucket each (the exposition sums them), so more buckets cost only the scrape's size.
     */
    public const BUCKETS = [
        0.005, 0.0075, 0.01, 0.011, 0.012, 0.013, 0.015, 0.016, 0.018, 0.02, 0.022, 0.024,
        0.027, 0.03, 0.033, 0.036, 0.039, 0.043, 0.047, 0.051, 0.056, 0.062, 0.068, 0.075,
        0.082, 0.091, 0.1, 0.11, 0.12, 0.13, 0.15, 0.16, 0.18, 0.2, 0.22, 0.24, 0.27, 0.3,
        0.33, 0.36, 0.39, 0.43, 0.47, 0.5, 0.56, 0.62, 0.68, 0.75, 0.82, 0.91, 1, 1.25, 1.5,
        2, 2.5, 3, 4, 5, 7.5, 10,
    ];

    /** The route label of a request that matched no route. */
    public const UNMATCHED = 'unmatched';

    public const CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

    /** Colours always exposed, and the statuses always exposed for them. */
    public const COLOURS = ['blue', 'green'];

    public const INITIAL_STATUSES = ['200', '500', '503'];

    public function __construct(
        private RedisFactory $redis,
        private QueueFactory $queue,
        private Database $database,
        private Router $router,
        private FpmMemory $fpm = new FpmMemory(),
    ) {
    }

    /**
     * The Redis hash of this web host.
     */
    public function key(): string
    {
        $host = preg_replace('/[^A-Za-z0-9._-]/', '', (string) gethostname());

        return 'metrics:http:routes:'.($host !== '' ? $host : 'localhost');
    }

    /**
     * The route label of a matched route: its name, else its URI pattern; "unmatched" for none.
     */
    public function routeLabel(mixed $route): string
    {
        if (! $route instanceof Route) {
            return self::UNMATCHED;
        }

        $name = $route->getName();
        $label = is_string($name) && $name !== '' ? $name : $route->uri();

        return $this->cleanRoute((string) $label);
    }

    /**
     * Count one answered request. Throws when Redis cannot be written (the caller swallows it).
     */
    public function record(string $colour, string $route, int $status, float $seconds): void
    {
        $colour = $this->cleanColour($colour);
        $route = $this->cleanRoute($route);
        $bucket = '+Inf';

        foreach (self::BUCKETS as $le) {
            if ($seconds <= $le) {
                $bucket = $this->number($le);
                break;
            }
        }

        $key = $this->key();

        $this->redis->connection()->transaction(function ($tx) use ($key, $colour, $route, $status, $bucket, $seconds) {
            $tx->hIncrBy($key, "{$colour}|{$route}|status|{$status}", 1);
            $tx->hIncrBy($key, "{$colour}|{$route}|bucket|{$bucket}", 1);
            $tx->hIncrByFloat($key, "{$colour}|{$route}|sum", $seconds);
        });
    }

    /**
     * The exposition: [HTTP status, body]. 503 with a comment when Redis cannot be read; the
     * queue gauge is left out (with a comment) when only the queue size cannot be read.
     *
     * @return array{0: int, 1: string}
     */
    public function render(): array
    {
        try {
            $fields = $this->redis->connection()->hGetAll($this->key());
        } catch (Throwable $e) {
            return [503, "# Redis is unavailable: request metrics cannot be read.\n"];
        }

        $series = [];
        $empty = fn (): array => ['status' => array_fill_keys(self::INITIAL_STATUSES, '0'), 'bucket' => [], 'sum' => '0'];

        foreach (self::COLOURS as $colour) {
            foreach ($this->knownRoutes() as $route) {
                $series[$colour][$route] = $empty();
            }
        }

        foreach (is_array($fields) ? $fields : [] as $field => $value) {
            $parts = explode('|', (string) $field);

            if (count($parts) < 3 || ! is_numeric($value)) {
                continue;
            }

            [$colour, $route, $kind] = $parts;
            $series[$colour][$route] ??= $empty();
            $data = &$series[$colour][$route];

            if ($kind === 'status' && isset($parts[3]) && preg_match('/^[1-5][0-9][0-9]$/', $parts[3])) {
                $data['status'][$parts[3]] = (string) (int) $value;
            } elseif ($kind === 'bucket' && isset($parts[3])) {
                $data['bucket'][$parts[3]] = (int) $value;
            } elseif ($kind === 'sum') {
                $data['sum'] = $this->number((float) $value);
            }

            unset($data);
        }

        ksort($series);
        $out = [];

        $out[] = '# HELP http_requests_total HTTP requests answered by the application, by status, colour and route.';
        $out[] = '# TYPE http_requests_total counter';

        foreach ($series as $colour => $routes) {
            ksort($routes, SORT_STRING);

            foreach ($routes as $route => $data) {
                ksort($data['status'], SORT_STRING);
                $labels = 'colour="'.$this->label((string) $colour).'",route="'.$this->label((string) $route).'"';

                foreach ($data['status'] as $status => $count) {
                    $out[] = 'http_requests_total{'.$labels.',status="'.$status.'"} '.$count;
                }
            }
        }

        $out[] = '# HELP http_request_duration_seconds Time from the start of a request until its response was ready.';
        $out[] = '# TYPE http_request_duration_seconds histogram';

        foreach ($series as $colour => $routes) {
            ksort($routes, SORT_STRING);

            foreach ($routes as $route => $data) {
                $labels = 'colour="'.$this->label((string) $colour).'",route="'.$this->label((string) $route).'"';
                $cumulative = 0;

                foreach ([...array_map(fn ($le) => $this->number($le), self::BUCKETS), '+Inf'] as $le) {
                    $cumulative += $data['bucket'][$le] ?? 0;
                    $out[] = 'http_request_duration_seconds_bucket{'.$labels.',le="'.$le.'"} '.$cumulative;
                }

                $out[] = 'http_request_duration_seconds_sum{'.$labels.'} '.$data['sum'];
                $out[] = 'http_request_duration_seconds_count{'.$labels.'} '.$cumulative;
            }
        }

        $out[] = '# HELP queue_jobs_pending Jobs in the default Redis queue not yet done (waiting, delayed and reserved).';
        $out[] = '# TYPE queue_jobs_pending gauge';

        try {
            $queue = (string) config('queue.connections.redis.queue', 'default');
            $pending = (int) $this->queue->connection('redis')->size($queue);
            $out[] = 'queue_jobs_pending{queue="'.$this->label($queue).'"} '.$pending;
        } catch (Throwable $e) {
            $out[] = '# queue_jobs_pending: the queue size cannot be read.';
        }

        array_push($out, ...$this->databaseLines(), ...$this->fpmLines());

        return [200, implode("\n", $out)."\n"];
    }

    /**
     * database_connections and queue_jobs_failed_total, each left out (with a comment) when the
     * database cannot be read.
     *
     * @return array<int, string>
     */
    private function databaseLines(): array
    {
        $out = [
            '# HELP database_connections Sessions connected to the application\'s database (pg_stat_activity).',
            '# TYPE database_connections gauge',
        ];

        try {
            $connection = $this->database->connection();
            $row = $connection->selectOne('SELECT count(*) AS n FROM pg_stat_activity WHERE datname = current_database()');
            $out[] = 'database_connections '.(int) ($row->n ?? 0);
        } catch (Throwable $e) {
            $out[] = '# database_connections: the database cannot be read.';
        }

        $out[] = '# HELP queue_jobs_failed_total Queued jobs that failed for good (rows in the failed jobs table).';
        $out[] = '# TYPE queue_jobs_failed_total counter';

        try {
            $table = (string) config('queue.failed.table', 'failed_jobs');
            $out[] = 'queue_jobs_failed_total '.(int) $this->database->connection()->table($table)->count();
        } catch (Throwable $e) {
            $out[] = '# queue_jobs_failed_total: the failed jobs table cannot be read.';
        }

        return $out;
    }

    /**
     * php_fpm_processes, php_fpm_memory_bytes and php_fpm_memory_anon_bytes per colour, left
     * out (with a comment) when this is not a php-fpm worker or /proc cannot be read.
     *
     * @return array<int, string>
     */
    private function fpmLines(): array
    {
        $found = $this->fpm->read();

        if ($found === null) {
            return ['# php_fpm_memory_bytes: not served by a php-fpm pool, or /proc cannot be read.'];
        }

        $out = [];
        $metrics = [
            ['php_fpm_processes', 'processes', 'php-fpm worker processes of the colour\'s pool on this host.'],
            ['php_fpm_memory_bytes', 'rss', 'Resident memory (VmRSS) of the colour\'s php-fpm workers on this host, summed.'],
            ['php_fpm_memory_anon_bytes', 'anon', 'Anonymous resident memory (RssAnon) of the colour\'s php-fpm workers on this host, summed.'],
        ];

        foreach ($metrics as [$name, $field, $help]) {
            $out[] = "# HELP {$name} {$help}";
            $out[] = "# TYPE {$name} gauge";

            foreach ($found as $colour => $values) {
                $out[] = $name.'{colour="'.$this->label((string) $colour).'"} '.$values[$field];
            }
        }

        return $out;
    }

    /**
     * The route labels of the application's routes (their names, else their URI patterns), and
     * "unmatched": the series exposed at zero for both colours.
     *
     * @return array<int, string>
     */
    private function knownRoutes(): array
    {
        $labels = [self::UNMATCHED];

        foreach ($this->router->getRoutes()->getRoutes() as $route) {
            $label = $this->routeLabel($route);

            if ($label !== 'metrics') {
                $labels[] = $label;
            }
        }

        return array_values(array_unique($labels));
    }

    /**
     * A route label safe for a hash field ("|" separates the parts), at most 100 characters.
     */
    private function cleanRoute(string $route): string
    {
        $route = substr(str_replace(['|', "\n", "\r"], '', $route), 0, 100);

        return $route !== '' ? $route : self::UNMATCHED;
    }

    /**
     * A colour safe for a hash field ("|" separates the parts).
     */
    private function cleanColour(string $colour): string
    {
        $colour = substr((string) preg_replace('/[^a-z0-9._-]/', '', strtolower($colour)), 0, 32);

        return $colour !== '' ? $colour : 'none';
    }

    /**
     * A label value escaped as the text format requires (backslash, double quote, newline).
     */
    private function label(string $value): string
    {
        return str_replace(['\\', '"', "\n"], ['\\\\', '\\"', '\\n'], $value);
    }

    /**
     * A float as the text format expects it: "0.005", "1", "2.5", "0.123456".
     */
    private function number(float|int $value): string
    {
        if (is_nan((float) $value)) {
            return 'NaN';
        }

        if (is_infinite((float) $value)) {
            return $value > 0 ? '+Inf' : '-Inf';
        }

        $text = rtrim(rtrim(sprintf('%.9F', $value), '0'), '.');

        return $text === '' || $text === '-0' ? '0' : $text;
    }
}
