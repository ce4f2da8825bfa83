<?php

use Illuminate\Database\Migrations\Migration;
use Illuminate\Database\Schema\Blueprint;
use Illuminate\Support\Facades\Schema;

return new class extends Migration {
    #[\Override]
    public function up(): void {
        Schema::create('embassies', function (Blueprint $table): void {
            $table->id();
            $table->string('country_code', 2)->index();
            $table->string('city');
            $table->text('address')->comment(<<<'TXT'
                Street address; "}" and 'drop' here are text. }
                TXT);
            $table->point('location')->nullable();
        });
        /*
         * Schema::drop('embassies_old');  -- done by hand in 2024, see #412 {
         */
    }

    public function down(): void {
        Schema::drop('embassies');
    }
};
