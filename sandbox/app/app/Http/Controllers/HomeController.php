<?php

namespace App\Http\Controllers;

use App\Services\AssetManifest;
use App\Services\FeatureFlagService;
use App\Services\ReleaseInfo;
use Illuminate\Contracts\View\View;

class HomeController extends Controller
{
    /**
     * The home page: shows the release and colour serving it, links the built assets.
     */
    public function __invoke(ReleaseInfo $release, AssetManifest $assets, FeatureFlagService $flags): View
    {
        return view('home', [
            'release' => $release->release(),
            'colour' => $release->colour(),
            'assets' => $assets,
            'newFlow' => $flags->isEnabled('visa_new_flow_20250601'),
        ]);
    }
}
