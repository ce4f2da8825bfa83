<?php

namespace App\Services;

/**
 * The memory of this web host's php-fpm workers, per colour, read from /proc.
 *
 * Each colour has its own pool, named "<app>-<colour>" ("bideshgomon-blue"): a worker's process
 * title (its /proc/<pid>/cmdline) is "php-fpm: pool bideshgomon-blue". The request that reads
 * this runs in one of those workers, so the application's pool prefix ("bideshgomon-") is read
 * from its own title, and only the pools "<prefix>blue" and "<prefix>green" are counted: another
 * application's pools on the host are not. The workers run as the same user as the reader, so
 * /proc/<pid>/status is readable (it is for any user).
 *
 * For each colour: the number of worker processes (the master, "php-fpm: master process", is
 * not one), the sum of their resident set sizes (VmRSS: what they hold in RAM, shared pages
 * such as opcache's included, counted in each worker that touched them) and the sum of their
 * anonymous resident memory (RssAnon: what each worker holds of its own, the PHP heap).
 */
class FpmMemory
{
    /** Colours counted (bounded labels). */
    public const COLOURS = ['blue', 'green'];

    public function __construct(private string $proc = '/proc')
    {
    }

    /**
     * Per colour: ['processes' => n, 'rss' => bytes, 'anon' => bytes]; null when this is not
     * a php-fpm worker (no pool prefix) or /proc cannot be read.
     *
     * @return array<string, array{processes: int, rss: int, anon: int}>|null
     */
    public function read(): ?array
    {
        $prefix = $this->poolPrefix((string) getmypid());
        $entries = $prefix === null ? false : @scandir($this->proc);

        if ($prefix === null || $entries === false) {
            return null;
        }

        $found = array_fill_keys(self::COLOURS, ['processes' => 0, 'rss' => 0, 'anon' => 0]);

        foreach ($entries as $pid) {
            if (! ctype_digit($pid)) {
                continue;
            }

            $pool = $this->pool($pid);
            $colour = $pool !== null && str_starts_with($pool, $prefix) ? substr($pool, strlen($prefix)) : null;

            if ($colour === null || ! isset($found[$colour])) {
                continue;
            }

            $status = @file_get_contents("{$this->proc}/{$pid}/status");

            if ($status === false) {
                continue; // the worker ended meanwhile
            }

            $found[$colour]['processes'] += 1;
            $found[$colour]['rss'] += $this->kilobytes($status, 'VmRSS') * 1024;
            $found[$colour]['anon'] += $this->kilobytes($status, 'RssAnon') * 1024;
        }

        return $found;
    }

    /**
     * "bideshgomon-" when the process ``$pid`` is a worker of the pool "bideshgomon-blue" (or
     * -green); else null.
     */
    public function poolPrefix(string $pid): ?string
    {
        $pool = $this->pool($pid);

        if ($pool === null || ! preg_match('/^(.+-)(?:blue|green)$/', $pool, $match)) {
            return null;
        }

        return $match[1];
    }

    /**
     * The pool of a php-fpm worker, from its process title; null for any other process.
     */
    private function pool(string $pid): ?string
    {
        $title = @file_get_contents("{$this->proc}/{$pid}/cmdline");

        if ($title === false || ! preg_match('/^php-fpm: pool (\S+)/', trim(str_replace("\0", ' ', $title)), $match)) {
            return null;
        }

        return $match[1];
    }

    private function kilobytes(string $status, string $field): int
    {
        return preg_match('/^'.$field.':\s+([0-9]+)\s*kB/m', $status, $match) ? (int) $match[1] : 0;
    }
}
