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
        // Only ever run against the throwaway sandbox schema.
        Schema::connection('sandbox')->dropAllTables();
        Schema::connection('sandbox')->dropAllViews();
        Schema::connection('sandbox')->dropAllTypes();
    }

    /**
     * Reverse the migrations.
     */
    public function down(): void
    {
        //
    }
};
