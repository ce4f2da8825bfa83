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
        Schema::connection('reporting')
            ->drop('daily_stats');
    }

    /**
     * Reverse the migrations.
     */
    public function down(): void
    {
        Schema::connection('reporting')->create('daily_stats', function (Blueprint $table) {
            $table->date('day')->primary();
            $table->unsignedInteger('applications');
        });
    }
};
