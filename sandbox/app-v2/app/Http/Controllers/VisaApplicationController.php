<?php

namespace App\Http\Controllers;

use App\Jobs\ProcessVisaApplication;
use App\Models\VisaApplication;
use Illuminate\Http\JsonResponse;
use Illuminate\Http\Request;

/**
 * /api/visa-applications (bearer token).
 */
class VisaApplicationController extends Controller
{
    /**
     * The latest applications (at most 50).
     */
    public function index(): JsonResponse
    {
        return new JsonResponse([
            'data' => VisaApplication::query()->latest('id')->limit(50)->get(),
        ]);
    }

    /**
     * Create an application and queue ProcessVisaApplication for it: 202 Accepted.
     */
    public function store(Request $request): JsonResponse
    {
        $data = $this->validate($request, [
            'applicant_name' => ['required', 'string', 'max:255'],
            'destination_country' => ['required', 'string', 'max:100'],
            'visa_type' => ['required', 'string', 'max:50'],
            'passport_country' => ['nullable', 'string', 'size:2'],
        ]);

        $application = VisaApplication::create($data);

        ProcessVisaApplication::dispatch($application->id);

        return new JsonResponse(['data' => $application->fresh()], 202);
    }

    public function show(VisaApplication $visaApplication): JsonResponse
    {
        return new JsonResponse(['data' => $visaApplication]);
    }
}
