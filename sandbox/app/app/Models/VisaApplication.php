<?php

namespace App\Models;

use Illuminate\Database\Eloquent\Model;
use Illuminate\Support\Str;

/**
 * @property int $id
 * @property string $reference
 * @property string $applicant_name
 * @property string $destination_country
 * @property string $visa_type
 * @property string $status
 * @property \Illuminate\Support\Carbon|null $processed_at
 */
class VisaApplication extends Model
{
    public const STATUS_SUBMITTED = 'submitted';

    public const STATUS_PROCESSED = 'processed';

    /**
     * @var array<int, string>
     */
    protected $fillable = [
        'applicant_name',
        'destination_country',
        'visa_type',
    ];

    /**
     * @var array<string, string>
     */
    protected $attributes = [
        'status' => self::STATUS_SUBMITTED,
    ];

    /**
     * @var array<string, string>
     */
    protected $casts = [
        'processed_at' => 'datetime',
    ];

    protected static function booted(): void
    {
        static::creating(function (VisaApplication $application) {
            $application->reference ??= (string) Str::uuid();
        });
    }
}
