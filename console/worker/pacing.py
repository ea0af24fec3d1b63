"""How the engine's worker paces itself against the UI: how often it publishes, how long it steps
before it looks for commands, how long it waits for the UI, and how it watches a live feed."""

PUBLISH_SECONDS = 0.1  # at most ten snapshots a second
BUILD_AVERAGING = 0.25  # the weight of the newest build in the cost that spaces snapshots
STEP_BUDGET_SECONDS = 0.04  # the worker yields to its event loop this often to take commands
UI_WAIT_SECONDS = 0.25  # the longest the engine waits for the UI to finish a snapshot
STAGED_ROWS = 100_000  # a book this large is shown a group of views per event-loop turn
STAGE_MS = 8  # between those groups: Qt paints a change 5 ms after it (QT_QPA_UPDATE_IDLE_TIME)
PAINT_TURNS = 3  # event-loop turns after a snapshot before the UI counts as done painting it
SWITCH_INTERVAL = 0.0005  # seconds a thread holds the GIL before it is asked to pass it on
SPEEDS = (1.0, 10.0, 60.0, 100.0, 300.0, 1000.0, 0.0)  # simulated s per real s; 0: flat out
OPERATIONS_SECONDS = 1.0  # while playing, the operations docks' state at most once a second
FEED_PULL_MS = 20  # how often a live feed's arrivals are looked at
SILENT_SECONDS = 15.0  # a feed's producer silent this long raises an alert
FREEZE_SECONDS = 1.0  # at most this often, every object alive is frozen out of the collector


def averaged_build_cost(average: float, cost: float) -> float:
    """The build cost that spaces snapshots (three times it apart), after a build of `cost`
    seconds: recent builds averaged, so that one which also redid the self-paced columns (risk
    prices, the stress ladder: over half a second at 1M positions) does not hold the screen on
    one tick for three times as long while the engine plays on."""
    return average + BUILD_AVERAGING * (cost - average)
