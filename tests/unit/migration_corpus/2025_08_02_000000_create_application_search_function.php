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
        DB::unprepared(<<<'SQL'
            CREATE OR REPLACE FUNCTION application_search(q text) RETURNS SETOF visa_applications AS $$
            BEGIN
                RETURN QUERY SELECT * FROM visa_applications WHERE reference ILIKE '%' || q || '%';
            END;
            $$ LANGUAGE plpgsql;
            SQL);
    }

    /**
     * Reverse the migrations.
     */
    public function down(): void
    {
        DB::unprepared('DROP FUNCTION IF EXISTS application_search(text)');
    }
};
