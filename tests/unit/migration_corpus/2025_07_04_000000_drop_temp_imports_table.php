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
        Schema::dropIfExists('temp_imports');
    }

    /**
     * Reverse the migrations.
     */
    public function down(): void
    {
        Schema::create('temp_imports', function (Blueprint $table) {
            $table->id();
            $table->json('payload');
        });
    }
};
