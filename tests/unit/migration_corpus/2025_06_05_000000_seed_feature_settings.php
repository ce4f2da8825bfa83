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
        DB::table('settings')->insert([
            'key' => 'features',
            'value' => <<<JSON
                {"drop_legacy_checkout": false, "rename": "}", "note": "Schema::drop('x')"}
                JSON,
        ]);
        DB::table('settings')->where('key', 'maintenance')->update(['value' => '{"dropColumn": "}"}']);
    }

    /**
     * Reverse the migrations.
     */
    public function down(): void
    {
        DB::table('settings')->where('key', 'features')->delete();
    }
};
