<?php

namespace App\Jobs;

use App\Models\VisaApplication;
use App\Services\ReleaseInfo;
use Illuminate\Bus\Queueable;
use Illuminate\Contracts\Queue\ShouldQueue;
use Illuminate\Foundation\Bus\Dispatchable;
use Illuminate\Queue\InteractsWithQueue;
use Illuminate\Support\Facades\Log;

/**
 * Queued processing of a visa application: marks it "processed" (run by "php artisan queue:work").
 */
class ProcessVisaApplication implements ShouldQueue
{
    use Dispatchable, InteractsWithQueue, Queueable;

    /**
     * @var int
     */
    public $tries = 3;

    /**
     * @var int
     */
    public $backoff = 5;

    public function __construct(public int $applicationId)
    {
    }

    public function handle(ReleaseInfo $release): void
    {
        $application = VisaApplication::find($this->applicationId);

        if ($application === null) {
            Log::warning("ProcessVisaApplication: application {$this->applicationId} no longer exists");

            return;
        }

        $application->forceFill([
            'status' => VisaApplication::STATUS_PROCESSED,
            'processed_at' => now(),
        ])->save();

        Log::info("ProcessVisaApplication: processed application {$application->id}", $release->toArray());
    }
}
