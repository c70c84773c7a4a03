from ctxrec.cli import main

main()
