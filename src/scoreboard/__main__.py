from scoreboard.cli import main

main()
