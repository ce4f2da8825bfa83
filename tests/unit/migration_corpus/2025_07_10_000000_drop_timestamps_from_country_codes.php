<?php

use Illuminate\Database\Migrations\Migration;
use Illuminate\Database\Schema\Blueprint;
use Illuminate\Support\Facades\DB;
use Illuminate\Support\Facades\Schema;

return new class extends Migration
{
    /**
     * Run the migrations.
     */
    public function up(): void
    {
        Schema::table('country_codes', function (Blueprint $table) {
            $table->dropTimestamps();
        });
        Schema::table('currency_rates', function (Blueprint $table) {
            $table->dropTimestampsTz();
        });
    }

    /**
     * Reverse the migrations.
     */
    public function down(): void
    {
        Schema::table('country_codes', function (Blueprint $table) {
            $table->timestamps();
        });
        Schema::table('currency_rates', function (Blueprint $table) {
            $table->timestampsTz();
        });
    }
};
