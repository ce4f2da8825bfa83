<?php

namespace App\Services;

use Symfony\Component\HttpFoundation\Response;

/**
 * Which release (git sha) and which colour (blue/green) this checkout is.
 *
 * Release: the first line of a REVISION file in the application root (a deploy
 * tool may write it), else the commit that .git/HEAD points at, resolved with
 * plain file reads (loose ref, packed-refs, or a detached sha; worktrees and
 * "gitdir:" files are followed). No git process is started. "unknown" when
 * neither exists.
 *
 * Colour: the APP_COLOUR environment variable (set by the php-fpm pool of each
 * colour, or by the queue worker's supervisor program), else the basename of
 * the real path of the application root when it is "blue" or "green", else
 * "none".
 *
 * Both values are computed once per process.
 */
class ReleaseInfo
{
    public const RELEASE_HEADER = 'X-Release';

    public const COLOUR_HEADER = 'X-Colour';

    private ?string $release = null;

    private ?string $colour = null;

    public function __construct(private string $basePath)
    {
    }

    /**
     * The git sha (or REVISION content) of the checkout serving this request.
     */
    public function release(): string
    {
        if ($this->release === null) {
            $revision = $this->firstLine($this->basePath.'/REVISION');
            $release = $revision !== null ? $this->clean($revision, 64) : '';

            if ($release === '') {
                $release = $this->gitHead($this->basePath.'/.git') ?? 'unknown';
            }

            $this->release = $release;
        }

        return $this->release;
    }

    /**
     * "blue", "green", another value given by APP_COLOUR, or "none".
     */
    public function colour(): string
    {
        if ($this->colour === null) {
            $this->colour = $this->resolveColour();
        }

        return $this->colour;
    }

    /**
     * @return array{release: string, colour: string}
     */
    public function toArray(): array
    {
        return ['release' => $this->release(), 'colour' => $this->colour()];
    }

    /**
     * Set the X-Release and X-Colour headers on a response and return it.
     */
    public function addHeaders(mixed $response): mixed
    {
        if ($response instanceof Response) {
            $response->headers->set(self::RELEASE_HEADER, $this->release());
            $response->headers->set(self::COLOUR_HEADER, $this->colour());
        }

        return $response;
    }

    private function resolveColour(): string
    {
        $fromEnv = $_SERVER['APP_COLOUR'] ?? $_ENV['APP_COLOUR'] ?? getenv('APP_COLOUR');

        if (is_string($fromEnv)) {
            $colour = $this->clean(strtolower($fromEnv), 32);

            if ($colour !== '') {
                return $colour;
            }
        }

        $real = realpath($this->basePath);
        $name = $real === false ? '' : basename($real);

        return in_array($name, ['blue', 'green'], true) ? $name : 'none';
    }

    /**
     * The sha HEAD points at, or null when it cannot be resolved.
     */
    private function gitHead(string $dotGit): ?string
    {
        if (is_file($dotGit)) {
            // A worktree or submodule: ".git" is a file "gitdir: <path>".
            $line = $this->firstLine($dotGit);

            if ($line === null || ! str_starts_with($line, 'gitdir:')) {
                return null;
            }

            $gitDir = $this->relativeTo(dirname($dotGit), trim(substr($line, 7)));
        } elseif (is_dir($dotGit)) {
            $gitDir = $dotGit;
        } else {
            return null;
        }

        $commonDir = $gitDir;
        $common = $this->firstLine($gitDir.'/commondir');

        if ($common !== null && $common !== '') {
            $commonDir = $this->relativeTo($gitDir, $common);
        }

        $value = $this->firstLine($gitDir.'/HEAD');

        // Follow symbolic refs ("ref: refs/heads/main"), a few levels at most.
        for ($depth = 0; $depth < 5 && $value !== null; $depth++) {
            if ($this->isSha($value)) {
                return strtolower($value);
            }

            if (! str_starts_with($value, 'ref:')) {
                return null;
            }

            $ref = trim(substr($value, 4));

            if (! str_starts_with($ref, 'refs/') || str_contains($ref, '..')) {
                return null;
            }

            $value = $this->firstLine($gitDir.'/'.$ref)
                ?? $this->firstLine($commonDir.'/'.$ref)
                ?? $this->packedRef($commonDir, $ref);
        }

        return null;
    }

    private function packedRef(string $gitDir, string $ref): ?string
    {
        $path = $gitDir.'/packed-refs';

        if (! is_file($path) || ! is_readable($path)) {
            return null;
        }

        $lines = @file($path, FILE_IGNORE_NEW_LINES | FILE_SKIP_EMPTY_LINES) ?: [];

        foreach ($lines as $line) {
            if ($line[0] === '#' || $line[0] === '^') {
                continue;
            }

            $parts = explode(' ', trim($line), 2);

            if (count($parts) === 2 && $parts[1] === $ref && $this->isSha($parts[0])) {
                return $parts[0];
            }
        }

        return null;
    }

    private function isSha(string $value): bool
    {
        return preg_match('/^[0-9a-f]{40}([0-9a-f]{24})?$/i', $value) === 1;
    }

    private function relativeTo(string $dir, string $path): string
    {
        return str_starts_with($path, '/') ? $path : $dir.'/'.$path;
    }

    private function firstLine(string $path): ?string
    {
        if (! is_file($path) || ! is_readable($path)) {
            return null;
        }

        $handle = @fopen($path, 'rb');

        if ($handle === false) {
            return null;
        }

        $line = fgets($handle, 4096);
        fclose($handle);

        return $line === false ? null : trim($line);
    }

    /**
     * Keep a value safe for a header: printable, no spaces, bounded length.
     */
    private function clean(string $value, int $max): string
    {
        return substr((string) preg_replace('/[^A-Za-z0-9._+\/-]/', '', trim($value)), 0, $max);
    }
}
