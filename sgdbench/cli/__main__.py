from sgdbench.cli import main

main()
