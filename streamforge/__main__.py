from streamforge.cli import main

main()
