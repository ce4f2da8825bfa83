// BideshGomon front end (sample): marks the page as scripted and reports health.
(function () {
    var root = document.documentElement;
    root.setAttribute('data-js', 'ready');

    var release = document.querySelector('meta[name="release"]');
    var colour = document.querySelector('meta[name="colour"]');
    if (release && colour) {
        console.info('BideshGomon release ' + release.content + ' (' + colour.content + ')');
    }
})();
