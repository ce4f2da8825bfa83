<?php

namespace Database\Seeders;

use App\Models\VisaApplication;
use Illuminate\Database\Seeder;

class DatabaseSeeder extends Seeder
{
    /**
     * Seed a few visa applications ("php artisan db:seed", "migrate:fresh --seed" on staging).
     *
     * @return void
     */
    public function run()
    {
        foreach ([
            ['Rahim Uddin', 'JP', 'work'],
            ['Nusrat Jahan', 'DE', 'student'],
            ['Karim Hossain', 'AE', 'work'],
        ] as [$name, $country, $type]) {
            VisaApplication::create([
                'applicant_name' => $name,
                'destination_country' => $country,
                'visa_type' => $type,
            ]);
        }
    }
}
