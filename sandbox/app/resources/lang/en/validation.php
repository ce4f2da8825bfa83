<?php

return [

    /*
    |--------------------------------------------------------------------------
    | Validation Language Lines (the rules this application uses)
    |--------------------------------------------------------------------------
    */

    'integer' => 'The :attribute must be an integer.',
    'max' => [
        'numeric' => 'The :attribute must not be greater than :max.',
        'string' => 'The :attribute must not be greater than :max characters.',
    ],
    'required' => 'The :attribute field is required.',
    'size' => [
        'string' => 'The :attribute must be :size characters.',
    ],
    'string' => 'The :attribute must be a string.',

    'custom' => [],

    'attributes' => [],

];
