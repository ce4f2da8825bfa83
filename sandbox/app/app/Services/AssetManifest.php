<?php

namespace App\Services;

use Illuminate\Support\HtmlString;

/**
 * Links the hashed front-end assets that "npm run build" writes to public/build,
 * using public/build/manifest.json (the shape of a Vite manifest:
 * {"resources/js/app.js": {"file": "assets/app-<hash>.js", "src": ..., "isEntry": true}}).
 */
class AssetManifest
{
    /** @var array<string, array<string, mixed>>|null */
    private ?array $manifest = null;

    public function __construct(private string $buildPath, private string $baseUrl = '/build')
    {
    }

    /**
     * Whether the assets have been built.
     */
    public function built(): bool
    {
        return $this->manifest() !== [];
    }

    /**
     * The public URL of an entry's built file, or null when it is not built.
     */
    public function url(string $entry): ?string
    {
        $file = $this->manifest()[$entry]['file'] ?? null;

        return is_string($file) ? $this->baseUrl.'/'.ltrim($file, '/') : null;
    }

    /**
     * <link> and <script> tags for these entries (nothing for entries not built).
     *
     * @param  array<int, string>  $entries
     */
    public function tags(array $entries): HtmlString
    {
        $tags = [];

        foreach ($entries as $entry) {
            $chunk = $this->manifest()[$entry] ?? null;

            if (! is_array($chunk) || ! isset($chunk['file'])) {
                continue;
            }

            foreach ((array) ($chunk['css'] ?? []) as $css) {
                $tags[] = $this->tag((string) $css);
            }

            $tags[] = $this->tag((string) $chunk['file']);
        }

        return new HtmlString(implode("\n    ", array_unique($tags)));
    }

    private function tag(string $file): string
    {
        $url = e($this->baseUrl.'/'.ltrim($file, '/'));

        return str_ends_with($file, '.css')
            ? '<link rel="stylesheet" href="'.$url.'">'
            : '<script type="module" src="'.$url.'"></script>';
    }

    /**
     * @return array<string, array<string, mixed>>
     */
    private function manifest(): array
    {
        if ($this->manifest === null) {
            $path = $this->buildPath.'/manifest.json';
            $decoded = is_file($path) ? json_decode((string) file_get_contents($path), true) : null;
            $this->manifest = is_array($decoded) ? $decoded : [];
        }

        return $this->manifest;
    }
}
