<?php

namespace App\Console\Commands;

use App\Services\ReleaseInfo;
use Illuminate\Console\Command;
use Illuminate\Support\Facades\Cache;
use Throwable;

/**
 * Scheduled every minute (app/Console/Kernel.php): proves that cron runs the scheduler.
 * Writes storage/app/heartbeat.json and the cache key "visa:heartbeat".
 */
class VisaHeartbeat extends Command
{
    /**
     * @var string
     */
    protected $signature = 'visa:heartbeat';

    /**
     * @var string
     */
    protected $description = 'Record a scheduler heartbeat (storage/app/heartbeat.json and the cache key visa:heartbeat)';

    public function handle(ReleaseInfo $release): int
    {
        $beat = ['timestamp' => gmdate('Y-m-d\TH:i:s\Z')] + $release->toArray() + ['pid' => getmypid()];
        $json = json_encode($beat, JSON_UNESCAPED_SLASHES);

        $path = storage_path('app/heartbeat.json');
        $tmp = $path.'.'.getmypid().'.tmp';

        if (@file_put_contents($tmp, $json."\n") === false || ! @rename($tmp, $path)) {
            @unlink($tmp);
            $this->error("Cannot write {$path}");

            return self::FAILURE;
        }

        try {
            Cache::forever('visa:heartbeat', $beat);
        } catch (Throwable $e) {
            $this->error('Heartbeat written to '.$path.' but not to the cache: '.$e->getMessage());

            return self::FAILURE;
        }

        $this->line($json);

        return self::SUCCESS;
    }
}
