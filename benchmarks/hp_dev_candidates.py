"""Hand-written candidates of the Harry Potter dev evaluation (input of benchmarks/hp_dev_build.py).

Each cloze line is ``prompt | answer``: the answer's first word is the next word only the
knowledge gives. Written from general knowledge of the books and the other works, not copied from
the summaries that benchmarks train on (``answer_in_training_text`` in the built files says which
answers nonetheless occur in the first 80% of wikipedia_summaries.txt).
"""

HP_CLOZE = """
Harry Potter's pet owl is named | Hedwig
Harry's two best friends are Ron Weasley and Hermione | Granger
The school of witchcraft and wizardry that Harry attends is called | Hogwarts
The headmaster of Hogwarts during Harry's school years is Albus | Dumbledore
The dark wizard who murdered Harry's parents calls himself Lord | Voldemort
Harry's godfather, who escaped from the wizard prison, is Sirius | Black
The Potions master who seems to hate Harry is Severus | Snape
The half-giant gamekeeper of Hogwarts is Rubeus | Hagrid
Harry's pale, sneering rival from Slytherin is Draco | Malfoy
Harry's red-haired best friend is Ron | Weasley
The wizarding sport played on flying broomsticks is called | Quidditch
The house-elf whom Harry freed by tricking his master into giving him a sock is | Dobby
The wizard prison guarded by Dementors is called | Azkaban
The wizarding bank run by goblins is called | Gringotts
In the wizarding world, people without magic are called | Muggles
The Hogwarts house that Harry is sorted into is | Gryffindor
The four Hogwarts houses are Gryffindor, Hufflepuff, Ravenclaw and | Slytherin
Harry grows up with his aunt Petunia and uncle Vernon, whose surname is | Dursley
Harry's spoiled cousin is named | Dudley
The Harry Potter books were written by J.K. | Rowling
The hidden shopping street for wizards in London is called Diagon | Alley
The only all-wizarding village in Britain, near Hogwarts, is | Hogsmeade
The Weasley family's crooked home is called the | Burrow
Voldemort hid pieces of his soul in objects called | Horcruxes
The Killing Curse is cast with the words Avada | Kedavra
The charm that conjures a Patronus is Expecto | Patronum
The strict Transfiguration professor and head of Gryffindor is Minerva | McGonagall
The werewolf who taught Defence Against the Dark Arts in Harry's third year is Remus | Lupin
Peter Pettigrew, who betrayed Harry's parents, was known to his friends as | Wormtail
Harry's clumsy, forgetful classmate Neville | Longbottom
The dreamy Ravenclaw girl who reads The Quibbler is Luna | Lovegood
Ron's twin brothers are Fred and | George
Harry's father was named | James
The position Harry plays on the Gryffindor Quidditch team is | Seeker
In Quidditch, the Seeker tries to catch the Golden | Snitch
The professor who wore a turban and hid Voldemort on the back of his head was Professor | Quirrell
The toad-like Ministry official in pink who became High Inquisitor of Hogwarts was Dolores | Umbridge
The Minister for Magic in Harry's first years at Hogwarts was Cornelius | Fudge
Voldemort's real name is Tom Marvolo | Riddle
Voldemort's pet snake is called | Nagini
The bad-tempered caretaker of Hogwarts is Argus | Filch
The poltergeist who causes trouble at Hogwarts is | Peeves
Hagrid's three-headed dog is called | Fluffy
The hippogriff that Harry rides in his third year is | Buckbeak
Ron's pet rat, who turned out to be a wizard, was called | Scabbers
Hermione's ginger cat is called | Crookshanks
The mirror that shows the deepest desire of your heart is the Mirror of | Erised
Harry bought his wand in Diagon Alley from Mr | Ollivander
The main newspaper of the wizarding world is the Daily | Prophet
Dumbledore's pet phoenix is called | Fawkes
The secret society Dumbledore founded to fight Voldemort is the Order of the | Phoenix
At Hogwarts, first-years are sorted into their houses by the Sorting | Hat
Voldemort's followers call themselves Death | Eaters
The potion that lets you take on another person's appearance is called | Polyjuice
The most powerful truth potion is called | Veritaserum
The golden potion of liquid luck is called Felix | Felicis
The elegant Bulgarian Seeker Harry met at the Triwizard Tournament was Viktor | Krum
The Hufflepuff champion of the Triwizard Tournament was Cedric | Diggory
The Beauxbatons champion of the Triwizard Tournament was Fleur | Delacour
Harry's first crush, a Ravenclaw Seeker, was Cho | Chang
The vain Defence Against the Dark Arts teacher in Harry's second year was Gilderoy | Lockhart
The Potions master who collected famous students in his Slug Club was Horace | Slughorn
The Auror who could change her appearance at will was Nymphadora | Tonks
The Auror with a magical eye, Alastor, was known as Mad-Eye | Moody
The map made by Moony, Wormtail, Padfoot and Prongs is the Marauder's | Map
Harry inherited his father's invisibility | cloak
The charm that levitates objects is Wingardium | Leviosa
The spell that disarms an opponent is | Expelliarmus
The spell that unlocks doors is | Alohomora
The language of snakes that Harry can speak is called | Parseltongue
The second Harry Potter book is Harry Potter and the Chamber of | Secrets
The monster in the Chamber of Secrets was a giant | basilisk
The ghost of a girl who haunts a bathroom at Hogwarts is Moaning | Myrtle
The fourth Harry Potter book is Harry Potter and the Goblet of | Fire
The third Harry Potter book is Harry Potter and the Prisoner of | Azkaban
The sixth Harry Potter book is Harry Potter and the Half-Blood | Prince
The seventh Harry Potter book is Harry Potter and the Deathly | Hallows
Dumbledore's younger brother, who runs the Hog's Head, is | Aberforth
The dark wizard whom Dumbledore defeated in 1945 was Gellert | Grindelwald
The Dursleys live at number four, Privet | Drive
Harry's parents were killed in the village of Godric's | Hollow
The hidden room that appears to those in need is the Room of | Requirement
The dangerous woods beside the Hogwarts grounds are called the Forbidden | Forest
The violent tree planted on the Hogwarts grounds is the Whomping | Willow
The supposedly haunted house near Hogsmeade is the Shrieking | Shack
The wizarding pub that leads to Diagon Alley is the Leaky | Cauldron
In Hogsmeade, Madam Rosmerta runs a pub called the Three | Broomsticks
Fred and George opened a joke shop called Weasleys' Wizard | Wheezes
The wizarding hospital in London is St | Mungo
The bitter old house-elf of the Black family is | Kreacher
Ron's tiny, excitable owl is called | Pigwidgeon
In Quidditch, the Chasers throw a red ball called the | Quaffle
The captain of the Gryffindor Quidditch team in Harry's first years was Oliver | Wood
Ron's mother is Molly | Weasley
Harry's Patronus takes the form of a | stag
A witch or wizard who can turn into an animal at will is called an | Animagus
Hagrid's baby dragon, hatched in his hut, was named | Norbert
The headmaster of Durmstrang was Igor | Karkaroff
The giant headmistress of Beauxbatons is Madame | Maxime
The journalist who writes lies for the Daily Prophet is Rita | Skeeter
The centaur who teaches Divination at Hogwarts is | Firenze
Hagrid's giant spider living in the Forbidden Forest is called | Aragog
The drink that Hogwarts students love in Hogsmeade is | Butterbeer
Harry's wand has a core of phoenix feather and is made of | holly
The sign that Voldemort's followers cast into the sky is the Dark | Mark
The secret defence club that Harry taught in his fifth year was called Dumbledore's | Army
The professor of Herbology at Hogwarts is Professor | Sprout
The tiny Charms professor at Hogwarts is Professor | Flitwick
The Divination teacher who makes gloomy prophecies is Sybill | Trelawney
The school nurse of Hogwarts is Madam | Pomfrey
The only ghost who teaches at Hogwarts is Professor | Binns
The basin in which Dumbledore stores and views memories is called a | Pensieve
The Hogwarts Express leaves King's Cross from platform nine and three-| quarters
Tom Riddle's diary was used to possess Ron's little sister | Ginny
The Triwizard Tournament is a contest between Hogwarts, Beauxbatons and | Durmstrang
The sword that Harry pulled from the Sorting Hat belonged to Godric | Gryffindor
Voldemort's mother was Merope | Gaunt
Sirius Black's Animagus form is a large black | dog
Harry's owl Hedwig was a birthday present from | Hagrid
The Knight Bus picks up stranded witches and wizards, and its conductor is Stan | Shunpike
Sirius's cousin, a devoted Death Eater, is Bellatrix | Lestrange
Draco Malfoy's father is | Lucius
The Minister for Magic after Fudge was Rufus | Scrimgeour
The strange magazine edited by Luna's father is The | Quibbler
The Weasley who became Head Boy and works at the Ministry is | Percy
The bouncy sweets in every flavour are Bertie Bott's Every Flavour | Beans
The prison guards that drain happiness from people are called | Dementors
The head of Slytherin house in Harry's first years is Professor | Snape
Harry's birthday is on the thirty-first of | July
The Dursleys live in the town of Little | Whinging
Sirius Black's family home is number twelve, | Grimmauld
Ron's eldest brother, a curse-breaker for Gringotts, is | Bill
Ron's brother who works with dragons in Romania is | Charlie
The Weasleys' father works at the Ministry of | Magic
The wand that Dumbledore won from Grindelwald is the Elder | Wand
The spell that makes a wand tip light up is | Lumos
Harry Potter and the Philosopher's | Stone
The fifth Harry Potter book is Harry Potter and the Order of the | Phoenix
Ron's full name is Ronald Bilius | Weasley
Hermione's full name is Hermione Jean | Granger
The boy wizard's full name is Harry James | Potter
Mad-Eye Moody's first name is | Alastor
Voldemort's cowardly servant who betrayed the Potters was Peter | Pettigrew
The Gryffindor house ghost is Nearly Headless | Nick
The caretaker Filch has a cat called Mrs | Norris
Ron's parents are Arthur and Molly | Weasley
Draco Malfoy's two thuggish friends are Vincent Crabbe and Gregory | Goyle
The gold coins of the wizarding world are called | Galleons
The Weasleys' flying car was a Ford | Anglia
Harry's second broomstick, a gift from Sirius, was a | Firebolt
Hermione's middle name is | Jean
The Hogwarts house whose emblem is a badger is | Hufflepuff
The Hogwarts house whose emblem is a serpent is | Slytherin
The Hogwarts house whose emblem is an eagle is | Ravenclaw
The Hogwarts house whose emblem is a lion is | Gryffindor
The founder of Ravenclaw house was Rowena | Ravenclaw
The founder of Hufflepuff house was Helga | Hufflepuff
The founder of Slytherin house was Salazar | Slytherin
The founder of Gryffindor house was Godric | Gryffindor
The wizard who disguised himself as Mad-Eye Moody was Barty | Crouch
Harry Potter is famous in the wizarding world as the Boy Who | Lived
People afraid to say Voldemort's name call him You-Know- | Who
Voldemort is also called He Who Must Not Be | Named
Voldemort's followers call him the Dark | Lord
The Killing Curse, the Cruciatus Curse and the Imperius Curse are the three Unforgivable | Curses
The Hogwarts Express departs from London's King's | Cross
Remus Lupin's friends called him | Moony
Sirius Black's nickname among the Marauders was | Padfoot
James Potter's nickname among the Marauders was | Prongs
The magizoologist who wrote Fantastic Beasts and Where to Find Them is Newt | Scamander
The book of wizarding fairy tales that Dumbledore left Hermione is The Tales of Beedle the | Bard
Ron supports a hopeless Quidditch team, the Chudley | Cannons
The Gryffindor common room is hidden behind the portrait of the Fat | Lady
Hagrid's cowardly boarhound is called | Fang
The Weasleys' ancient, clumsy owl is called | Errol
Luna's father, the editor of The Quibbler, is Xenophilius | Lovegood
The wandmaker of Diagon Alley is Garrick | Ollivander
Cedric Diggory's father works at the Ministry; his name is Amos | Diggory
Before she married James Potter, Harry's mother was Lily | Evans
Harry learned to cast a Patronus from Professor | Lupin
The Sorting Hat wanted to put Harry in | Slytherin
Harry's first broomstick was a Nimbus Two | Thousand
The Hogwarts gamekeeper's half-brother Grawp is a | giant
Harry's younger son is named Albus | Severus
The Order of the Phoenix used Sirius's house at number twelve, Grimmauld | Place
The Weasley twins are Fred and George; their younger brother is | Ron
Ginny Weasley's full first name is | Ginevra
The dark wizard Harry defeated at the end of the last book was Lord | Voldemort
"""

NEIGHBOUR_CLOZE = """
The Dark Lord who forged the One Ring is | Sauron
The grey wizard who fell fighting the Balrog in Moria is | Gandalf
The elf archer of the Fellowship of the Ring is | Legolas
The dwarf warrior of the Fellowship of the Ring is | Gimli
The creature who called the Ring "my precious" is | Gollum
The Lord of the Rings was written by J.R.R. | Tolkien
The hobbits of Middle-earth live in a land called the | Shire
The One Ring can only be destroyed in the fires of Mount | Doom
The elven refuge where Elrond lives is called | Rivendell
The dragon who sleeps on the treasure of the Lonely Mountain is | Smaug
The white wizard who betrayed the Fellowship was | Saruman
Frodo's hobbit companions were Sam, Merry and | Pippin
The ranger Strider was in truth the heir of Isildur, | Aragorn
Boromir's younger brother is | Faramir
The Lady of Lothlorien who gave Frodo a phial of light is | Galadriel
The oldest of the Ents in Fangorn Forest is | Treebeard
In the Chronicles of Narnia, the children enter Narnia through a | wardrobe
The Chronicles of Narnia were written by C.S. | Lewis
The four Pevensie children are Peter, Susan, Edmund and | Lucy
In Narnia, Edmund betrays his siblings for a box of Turkish | Delight
The faun Lucy meets under the lamp-post in Narnia is Mr | Tumnus
Luke Skywalker's father turned out to be Darth | Vader
The tiny green Jedi master who trains Luke on Dagobah is | Yoda
Han Solo's ship is the Millennium | Falcon
Han Solo's Wookiee co-pilot is | Chewbacca
The rebel princess in Star Wars is Princess | Leia
The old Jedi who first trains Luke is Obi-Wan | Kenobi
The weapon of a Jedi knight is a | lightsaber
Luke Skywalker grew up on the desert planet | Tatooine
Percy Jackson is the son of the Greek sea god | Poseidon
The Percy Jackson books were written by Rick | Riordan
A Song of Ice and Fire was written by George R.R. | Martin
In Game of Thrones, the Lord of Winterfell is Ned | Stark
The Mother of Dragons in Game of Thrones is Daenerys | Targaryen
The capital of the Seven Kingdoms in Game of Thrones is King's | Landing
The motto of House Stark is "Winter is | coming
In The Wizard of Oz, Dorothy's little dog is named | Toto
In The Wizard of Oz, Dorothy follows the yellow brick | road
Alice follows the White | Rabbit
The host of the tea party in Alice in Wonderland is the Mad | Hatter
Alice's Adventures in Wonderland was written by Lewis | Carroll
Peter Pan's fairy companion is Tinker | Bell
Peter Pan's enemy, the pirate captain, is Captain | Hook
Peter Pan lives on an island called | Neverland
Sherlock Holmes's friend and biographer is Dr | Watson
Sherlock Holmes lives at 221B | Baker
The heroine of The Hunger Games is Katniss | Everdeen
In Twilight, Bella Swan falls in love with the vampire Edward | Cullen
The Discworld novels were written by Terry | Pratchett
King Arthur's sword, given by the Lady of the Lake, is | Excalibur
King Arthur's wizard advisor is | Merlin
King Arthur's knights sat at the Round | Table
King Arthur's queen was | Guinevere
The king of the gods on Mount Olympus is | Zeus
The Greek hero who beheaded Medusa was | Perseus
The winged horse of Greek myth is | Pegasus
Achilles could only be wounded in his | heel
Dracula was written by Bram | Stoker
Frankenstein was written by Mary | Shelley
Snow White lived with seven | dwarfs
Geralt, the witcher, is known as Geralt of | Rivia
The owner of the chocolate factory in Roald Dahl's story is Willy | Wonka
The Little Prince was written by Antoine de | Saint
Eragon's blue dragon is named | Saphira
The Chronicles of Narnia's White Witch keeps Narnia in endless | winter
The Wicked Witch of the West is destroyed by a bucket of | water
The Hobbit's full title is The Hobbit, or There and Back | Again
"""

CONTROL_CLOZE = """
The capital of France is | Paris
The capital of Japan is | Tokyo
The capital of Italy is | Rome
The capital of Germany is | Berlin
The capital of Spain is | Madrid
The capital of Russia is | Moscow
The capital of Egypt is | Cairo
The capital of Canada is | Ottawa
The capital of Australia is | Canberra
The capital of China is | Beijing
The capital of the United Kingdom is | London
The largest planet in our solar system is | Jupiter
The planet closest to the Sun is | Mercury
The planet known as the Red Planet is | Mars
Romeo and Juliet was written by William | Shakespeare
The theory of relativity was developed by Albert | Einstein
The first person to walk on the Moon was Neil | Armstrong
The highest mountain in the world is Mount | Everest
The longest river in Africa is the | Nile
The largest ocean on Earth is the | Pacific
The Mona Lisa was painted by Leonardo da | Vinci
The first President of the United States was George | Washington
Plants turn sunlight into food through a process called | photosynthesis
The currency of Japan is the | yen
The Eiffel Tower is in the city of | Paris
There are seven days in a | week
Honey is made by | bees
The Statue of Liberty stands in New | York
Isaac Newton is famous for his law of universal | gravitation
Charles Darwin proposed the theory of | evolution
Pride and Prejudice was written by Jane | Austen
The largest animal that has ever lived is the blue | whale
Most penguins live in the Southern Hemisphere, many of them in | Antarctica
The telephone was invented by Alexander Graham | Bell
Microsoft was founded by Bill | Gates
The Amazon rainforest is in South | America
The official language of Brazil is | Portuguese
The Roman general who crossed the Rubicon was Julius | Caesar
DNA stands for deoxyribonucleic | acid
The Earth revolves around the | Sun
The play about the Danish prince who sees his father's ghost is | Hamlet
The Odyssey is an ancient Greek epic poem attributed to | Homer
War and Peace was written by Leo | Tolstoy
The Starry Night was painted by Vincent van | Gogh
Guernica was painted by Pablo | Picasso
The Beatles were a band from the English city of | Liverpool
The ancient Olympic Games were held in | Greece
Water is made of hydrogen and | oxygen
The heart pumps | blood
The chemical element with the symbol Fe is | iron
The Great Wall was built in | China
The Colosseum is in the city of | Rome
Apple was co-founded by Steve | Jobs
The light bulb is often credited to Thomas | Edison
The Sahara is the largest hot | desert
A year has twelve | months
The freezing point of water is zero degrees | Celsius
Ice is the solid form of | water
The Taj Mahal is in | India
The smallest prime number is | two
The composer of the Ninth Symphony with the Ode to Joy is Ludwig van | Beethoven
The Magic Flute was composed by Wolfgang Amadeus | Mozart
The Netherlands' capital is | Amsterdam
The gas that plants absorb from the air is carbon | dioxide
Kangaroos are native to | Australia
The Mediterranean Sea lies between Europe and | Africa
The human body's largest organ is the | skin
The author of the Origin of Species was Charles | Darwin
Sound travels faster in water than in | air
The Declaration of Independence was mainly written by Thomas | Jefferson
"""

# Next-token mass prompts (the WHP paper's probability-based familiarity): the next token is
# likely one of the target's names; the reference is the most likely one.
HP_PROBABILITY = """
Harry Potter's two best friends are | Ron
At the start of term, the students took the train to | Hogwarts
The boy with the lightning scar was named | Harry
The clever girl who always had her hand up in class was | Hermione
The enormous, bearded gamekeeper who lived in a hut by the forest was | Hagrid
Harry's snowy owl swooped down with a letter; her name was | Hedwig
The blond boy from Slytherin sneered at Harry. His name was | Draco
The stern professor with square spectacles and a tight bun was Professor | McGonagall
The house-elf with huge eyes and a tea-cosy hat bowed to Harry; it was | Dobby
Harry's fat, spoiled cousin was | Dudley
Harry's uncle, a large man with a bushy moustache, was called | Vernon
The Potions master's first name was | Severus
The girl with dirigible-plum earrings and radish earrings was | Luna
Harry's uncle Vernon shouted at his nephew, | Harry
The famous wizard's surname was | Potter
The boy who lived under the stairs at the Dursleys' was Harry | Potter
The Weasley boy who became Harry's best friend was | Ron
The castle where young witches and wizards study magic is called | Hogwarts
The prison for wizards on an island in the North Sea is called | Azkaban
Voldemort's giant snake was called | Nagini
The pieces of Voldemort's soul were hidden in objects called | Horcruxes
The old house-elf who muttered insults in the Black family house was | Kreacher
The pretty Ravenclaw Seeker Harry liked was | Cho
Professor Snape's first name was | Severus
"Come on," said Ron to his best friend, | Harry
Hermione turned to her two friends, Harry and | Ron
Ron's best friend, the famous boy wizard, was | Harry
The letter was addressed to Mr H. Potter, The Cupboard under the Stairs. It was from | Hogwarts
The Gryffindor Seeker caught the Snitch. The crowd cheered for | Harry
The headmistress after the war was Minerva | McGonagall
Aunt Petunia shrieked at her nephew, | Harry
The greasy-haired Potions teacher glared at Harry. Professor | Snape
In the Gryffindor common room, Ron played wizard chess with | Harry
The know-it-all witch who founded S.P.E.W. was | Hermione
The three friends, Harry, Ron and | Hermione
The half-giant who rescued baby Harry from the ruined house in Godric's Hollow was | Hagrid
Harry Potter is a wizard who studies at | Hogwarts
The famous young wizard with round glasses and messy black hair is Harry | Potter
Harry looked up at the boy with red hair and freckles, | Ron
Draco's father, Lucius, was a Death Eater, and his son was | Draco
"""

# Completion prompts (familiarity by reference words): a model that knows the books continues
# them with one of the references.
HP_COMPLETION = """
The boy with the lightning-shaped scar pushed his glasses up and looked at his two friends, | Ron, Hermione, Harry
On the first of September, the scarlet steam engine waited at platform nine and three-quarters to take the students to | Hogwarts, Hogwarts Express
The bearded headmaster peered at him over his half-moon spectacles and said | Dumbledore, Harry
The ghost of a sad girl wailed from the flooded toilets on the second floor, | Myrtle, Moaning Myrtle
The three friends crept under the silvery cloak past the sleeping caretaker and his cat, | Filch, Mrs Norris, invisibility cloak
The Minister for Magic refused to believe that the Dark Lord had returned, and the newspaper called the boy | Fudge, Daily Prophet, Harry, Voldemort
The Seeker of the Gryffindor team dived for the tiny golden ball, | Snitch, Quidditch, Harry
Every year a new teacher came to teach Defence Against the Dark Arts, and this year it was | Lockhart, Lupin, Moody, Umbridge, Quirrell, Snape
The red-haired family lived in a crooked house called | Burrow, Weasley
The goblins at the wizarding bank led him down to his vault, | Gringotts, vault
He held up his wand and cried the incantation, and a silver stag burst from its tip: | Patronus, Expecto Patronum, Dementor
The sorting ceremony began, and the old patched hat on the stool began to sing about the four houses: | Gryffindor, Hufflepuff, Ravenclaw, Slytherin, Sorting Hat
The Dark Lord's followers wore masks and hoods and called themselves | Death Eaters, Voldemort
In the dungeon classroom, the students stirred their cauldrons while the Potions master | Snape, Slytherin
Hermione pulled out her time-turner so that she could attend all of her classes, including | Arithmancy, Divination, Muggle Studies, Hermione
The half-giant knocked down the door of the hut on the rock and said, "Yer a wizard, | Harry, Hagrid
In the third task of the tournament, the champions entered a huge maze where | Triwizard, Cedric, Krum, Fleur
The Weasley twins set off fireworks in the Great Hall to annoy the High Inquisitor, | Umbridge, Fred, George
The sixth-year textbook had belonged to someone who called himself the | Half-Blood Prince, Snape
The pale, snake-like wizard rose from the cauldron in the graveyard, | Voldemort, Wormtail, Cedric
The friends searched for the remaining pieces of the Dark Lord's soul, hidden in objects called | Horcrux, Horcruxes
The old wandmaker handed the boy a wand of holly and phoenix feather, eleven inches, and said | Ollivander, Voldemort, brother
The ginger cat with a squashed face chased the rat around the dormitory: | Crookshanks, Scabbers, Hermione, Ron
Above the castle, the Dark Mark hung in the sky after the headmaster fell from the Astronomy Tower, killed by | Snape, Dumbledore, Draco
The hooded creatures glided towards him, and he felt all happiness drain away as the | Dementors, Dementor, Patronus
The children at the school for wizards played a game on broomsticks with four balls called | Quidditch, Quaffle, Bludger, Snitch
He fed the hippogriff a dead ferret and bowed to it before climbing onto its back, | Buckbeak, Hagrid
The house-elf who served the Malfoys was freed when Lucius threw him a sock: | Dobby
In the shop on the wizarding street, the boy saw brooms, cauldrons and owls, and he knew he was in | Diagon Alley, Hagrid
The brave boy in Gryffindor pulled the sword from the hat and killed the giant snake, | Neville, Nagini, Gryffindor
The boy who had grown up in a cupboard under the stairs received a letter written in emerald-green ink from | Hogwarts, Harry, Dursley, Hagrid
In the staff room, the tall professor in emerald robes and the greasy-haired Potions master argued about the House Cup, | McGonagall, Snape, Gryffindor, Slytherin
Harry's aunt and uncle hated anything unusual, and they never spoke of his parents, | Lily, James, Potter, Dursley
The smallest Weasley boy's rat had lived in the family for twelve years, which was strange for a rat, | Scabbers, Pettigrew, Wormtail, Ron
The students at the wizarding school who were not sorted into the brave house might end up among the cunning | Slytherin, Slytherins, Hufflepuff, Ravenclaw
The escaped prisoner had been the best friend of the boy's father and was also his | Sirius, godfather, Black, Azkaban
Every year at the school's Halloween feast, the ghosts drifted through the walls of the Great Hall, led by | Nearly Headless Nick, Peeves, Hogwarts, Bloody Baron
The spell book of the mysterious prince held notes in the margins, including a curse called | Sectumsempra, Half-Blood Prince, Snape
In the village near the school, the students bought sweets at Honeydukes and joke products at | Zonko, Hogsmeade, Three Broomsticks
The dark wizard's name was so feared that most witches and wizards called him You-Know-Who or | He-Who-Must-Not-Be-Named, Voldemort, Dark Lord
Harry Potter and his friends Ron and Hermione walked across the grounds of | Hogwarts, Hagrid, Dumbledore, Gryffindor, Quidditch
On his eleventh birthday, Harry Potter learned from Hagrid that he was a wizard and would go to | Hogwarts, Dumbledore, Diagon Alley
Professor Dumbledore, the headmaster of Hogwarts, called Harry Potter to his office and told him about | Voldemort, Horcrux, Horcruxes, Snape, Sirius, prophecy
In the Gryffindor common room, Ron Weasley complained to Harry about Professor | Snape, McGonagall, Lupin, Lockhart, Umbridge, Quirrell, Hermione
Harry Potter's greatest enemy, the dark wizard who killed his parents, was | Voldemort, Lord Voldemort, Riddle, You-Know-Who
Hermione Granger opened her book of spells and told Ron and Harry that the charm they needed was | Wingardium Leviosa, Alohomora, Lumos, Expelliarmus, Accio, Expecto Patronum
At the Quidditch match between Gryffindor and Slytherin, Harry Potter chased the | Snitch, Golden Snitch, Malfoy, Draco, Seeker
Harry Potter, Ron Weasley and Hermione Granger went to Hogsmeade and drank | Butterbeer, Three Broomsticks, Honeydukes
When Harry Potter arrived at Hogwarts, the Sorting Hat put him in | Gryffindor, Slytherin
Ron Weasley's family lived in a house called the Burrow with his parents, Arthur and Molly, and his brothers | Fred, George, Percy, Bill, Charlie, Ginny
In Harry Potter's third year, a prisoner escaped from Azkaban. His name was | Sirius, Sirius Black, Black
Harry Potter looked at the Marauder's Map and saw a name he thought was dead: | Peter Pettigrew, Pettigrew, Wormtail, Scabbers
Draco Malfoy sneered at Harry Potter and his friends, calling Hermione a | Mudblood, Granger, Muggle
At Hogwarts, the Potions teacher Severus Snape hated Harry Potter because of his father, | James, James Potter, Marauders, Sirius
In the Triwizard Tournament, Harry Potter competed against Cedric Diggory, Fleur Delacour and | Krum, Viktor Krum
The Weasley twins, Fred and George, opened a joke shop in Diagon Alley called | Weasleys' Wizard Wheezes, Wheezes
Harry Potter went down to the dungeons for his Potions lesson with | Snape, Slughorn, Slytherins, Draco, Malfoy
Dumbledore's Army met in secret in the Room of Requirement to learn defensive spells from | Harry, Harry Potter, Umbridge
Harry Potter heard a voice in the walls of Hogwarts. It belonged to the monster of the Chamber of Secrets, a | basilisk, Slytherin, Riddle, Myrtle, Parseltongue
Lord Voldemort had split his soul and hidden the pieces in objects called | Horcrux, Horcruxes
At the end of his first year, Harry Potter found the Philosopher's Stone hidden in the Mirror of | Erised, Quirrell, Voldemort, Dumbledore
In the Ministry of Magic, Harry Potter and his friends fought the Death Eaters led by | Lucius, Lucius Malfoy, Bellatrix, Bellatrix Lestrange, Voldemort
Hagrid showed Harry Potter, Ron and Hermione the three-headed dog he called | Fluffy, Philosopher's Stone, Norbert
Harry Potter received a Firebolt for Christmas in his third year; it was secretly a gift from | Sirius, Sirius Black, Black
Professor McGonagall, head of Gryffindor, took Harry Potter to meet the captain of the Quidditch team, | Oliver Wood, Wood, Seeker
In the Forbidden Forest, Harry Potter met a centaur named | Firenze, Bane, Ronan, Hagrid, Voldemort
When Dementors attacked Harry Potter and his cousin Dudley, Harry cast the spell | Expecto Patronum, Patronus
Harry Potter's owl, Hedwig, flew in through the window of the Gryffindor tower with a letter from | Sirius, Hagrid, Dumbledore, Hermione, Ron, Ministry
Hermione Granger used a Time-Turner to save the hippogriff | Buckbeak, Sirius, Hagrid
Harry Potter used the invisibility cloak to sneak into the Restricted Section of the library, where he hoped to learn about | Nicolas Flamel, Flamel, Philosopher's Stone, Horcrux, Horcruxes
"""
