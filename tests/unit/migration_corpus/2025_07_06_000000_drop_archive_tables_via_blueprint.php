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
        Schema::table('application_archive', function (Blueprint $table) {
            $table->drop();
        });
        Schema::table('payment_archive', function (Blueprint $table) {
            $table->dropIfExists();
        });
    }

    /**
     * Reverse the migrations.
     */
    public function down(): void
    {
        Schema::create('application_archive', function (Blueprint $table) {
            $table->id();
        });
        Schema::create('payment_archive', function (Blueprint $table) {
            $table->id();
        });
    }
};
