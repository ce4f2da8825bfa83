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
        Schema::table('visa_guides', function (Blueprint $table) {
            $table->dropFullText(['title', 'body']);
            $table->dropSpatialIndex(['embassy_location']);
        });
    }

    /**
     * Reverse the migrations.
     */
    public function down(): void
    {
        Schema::table('visa_guides', function (Blueprint $table) {
            $table->fullText(['title', 'body']);
            $table->spatialIndex('embassy_location');
        });
    }
};
