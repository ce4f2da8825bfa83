<?php

namespace App\Console\Commands;

use App\Jobs\ProcessVisaApplication;
use App\Models\VisaApplication;
use Illuminate\Console\Command;

/**
 * Create a visa application and queue its processing job (what POST /api/visa-applications does).
 */
class VisaDispatch extends Command
{
    /**
     * @var string
     */
    protected $signature = 'visa:dispatch
        {--applicant=Test Applicant : Applicant name}
        {--country=JP : Destination country}
        {--type=work : Visa type}';

    /**
     * @var string
     */
    protected $description = 'Create a visa application and dispatch ProcessVisaApplication to the queue';

    public function handle(): int
    {
        $application = VisaApplication::create([
            'applicant_name' => (string) $this->option('applicant'),
            'destination_country' => (string) $this->option('country'),
            'visa_type' => (string) $this->option('type'),
        ]);

        ProcessVisaApplication::dispatch($application->id);

        $this->line(json_encode([
            'id' => $application->id,
            'reference' => $application->reference,
            'status' => $application->status,
            'queue' => config('queue.default'),
        ], JSON_UNESCAPED_SLASHES));

        return self::SUCCESS;
    }
}
