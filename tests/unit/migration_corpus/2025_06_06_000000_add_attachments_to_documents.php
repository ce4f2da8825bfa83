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
        Schema::table('documents', function (Blueprint $table) {
            # Attachments: we drop nothing here, see down().
            $table->nullableMorphs('attachable');
            $table->string('disk')->default("s3");
            $table->string('path', 1024)->nullable();
            $table->timestampsTz();
        });
    }

    /**
     * Reverse the migrations.
     */
    public function down(): void
    {
        Schema::table('documents', function (Blueprint $table) {
            $table->dropMorphs('attachable');
            $table->dropColumn(['disk', 'path']);
            $table->dropTimestampsTz();
        });
    }
};
