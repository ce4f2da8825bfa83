<?php

use Illuminate\Database\Migrations\Migration;
use Illuminate\Database\Schema\Blueprint;
use Illuminate\Support\Facades\Schema;

class AddStatusIndexToVisaApplications extends Migration
{
    public function down()
    {
        Schema::table('visa_applications', function (Blueprint $table) {
            $table->dropIndex('visa_status_created_idx');
        });
    }

    public function up()
    {
        Schema::table('visa_applications', function (Blueprint $table) {
            $table->index(['status', 'created_at'], 'visa_status_created_idx');
        });
    }
}
