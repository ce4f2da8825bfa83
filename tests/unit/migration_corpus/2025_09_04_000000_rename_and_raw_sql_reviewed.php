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
        /* bgdeploy: allow-destructive the old name is only read by the v1 API, retired 2025-08 */
        Schema::table('agencies', function (Blueprint $table) {
            $table->renameColumn('trade_license', 'trade_licence_no');
        });
        DB::statement('CREATE INDEX agencies_licence_idx ON agencies (trade_licence_no)');
    }

    /**
     * Reverse the migrations.
     */
    public function down(): void
    {
        DB::statement('DROP INDEX agencies_licence_idx');
        Schema::table('agencies', function (Blueprint $table) {
            $table->renameColumn('trade_licence_no', 'trade_license');
        });
    }
};
