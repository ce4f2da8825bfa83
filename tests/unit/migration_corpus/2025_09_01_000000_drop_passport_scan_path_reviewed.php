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
        // bgdeploy: allow-destructive passport_scan_path unused since v3.2 (PR #981), snapshot verified
        Schema::table('users', function (Blueprint $table) {
            $table->dropColumn('passport_scan_path');
        });
    }

    /**
     * Reverse the migrations.
     */
    public function down(): void
    {
        Schema::table('users', function (Blueprint $table) {
            $table->string('passport_scan_path')->nullable();
        });
    }
};
