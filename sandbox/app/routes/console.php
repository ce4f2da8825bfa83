<?php

/*
|--------------------------------------------------------------------------
| Console Routes
|--------------------------------------------------------------------------
|
| The application's commands are classes in app/Console/Commands (loaded by
| app/Console/Kernel.php); the schedule is in app/Console/Kernel.php.
|
*/
