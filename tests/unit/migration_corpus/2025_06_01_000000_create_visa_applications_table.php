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
        Schema::create('visa_applications', function (Blueprint $table) {
            $table->id();
            $table->foreignId('user_id')->constrained()->cascadeOnDelete();
            $table->foreignId('agency_id')->nullable()->constrained()->nullOnDelete();
            $table->string('reference')->unique();
            // we never drop or rename this table: partners link to references {forever}
            $table->string('status')->default('draft'); # draft -> submitted -> approved }
            $table->timestamp('dropped_at')->nullable(); /* when the applicant dropped out } */
            $table->string('rename_reason')->nullable()->comment("the applicant's \"rename\" request {if any}");
            $table->string('note')->default('}')->comment('it\'s not a }; drop()');
            $table->json('meta')->default(DB::raw("'{}'::json"));
            $table->timestamps();
            $table->softDeletes();
        });
    }

    /**
     * Reverse the migrations.
     */
    public function down(): void
    {
        Schema::dropIfExists('visa_applications');
    }
};
