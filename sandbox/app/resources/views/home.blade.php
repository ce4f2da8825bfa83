<!DOCTYPE html>
<html lang="en">
<head>
    <meta charset="utf-8">
    <meta name="viewport" content="width=device-width, initial-scale=1">
    <meta name="release" content="{{ $release }}">
    <meta name="colour" content="{{ $colour }}">
    <title>{{ config('app.name', 'BideshGomon') }}</title>
    {{ $assets->tags(['resources/css/app.css', 'resources/js/app.js']) }}
</head>
<body class="colour-{{ $colour }}">
    <main>
        <h1>BideshGomon</h1>
        <p class="tagline">Visa applications, one step at a time.</p>

        <dl class="release">
            <dt>Release</dt>
            <dd id="release">{{ $release }}</dd>
            <dt>Colour</dt>
            <dd id="colour">{{ $colour }}</dd>
            <dt>Assets</dt>
            <dd id="assets">{{ $assets->built() ? 'built' : 'not built (run npm run build)' }}</dd>
        </dl>

        @if ($newFlow)
            <p id="visa-flow">New visa application flow</p>
        @else
            <p id="visa-flow">Classic visa application flow</p>
        @endif
    </main>
</body>
</html>
